"""The carrier an outbound attempt was dialled through.

Crash recovery and the carrier's callbacks need the carrier of the attempt
itself: the persona's binding may have changed since it was dialled, and each
carrier looks its calls up in its own way (docs/outbound.md). NULL for
attempts written before this revision (recovery then falls back to the
persona's carrier, as before). Expand only: nullable, so an older replica's
inserts still work.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("outbound_attempts", sa.Column("carrier", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_attempts") as batch:
        batch.drop_column("carrier")
