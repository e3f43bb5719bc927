"""Which kind of leg carried a call, and the dashboard user who placed it.

``channel`` is ``twilio``, ``browser`` or a carrier's name ("" for rows
written before legs existed); ``placed_by`` is the dashboard user of a
browser call (NULL for callers). Expand only: ``channel`` has a server
default, so an older replica's inserts (which do not name it) still work.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "calls",
        sa.Column("channel", sa.String(32), nullable=False, server_default=sa.text("''")),
    )
    op.add_column("calls", sa.Column("placed_by", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("placed_by")
        batch.drop_column("channel")
