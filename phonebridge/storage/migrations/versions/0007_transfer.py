"""A call's hand-off to a human: to whom, cold or warm, when, and how it went (issue 17).

NULL for every call that was never transferred (and rows written before).
Expand only: nullable columns no older replica writes.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("transfer_to", sa.String(length=128), nullable=True))
    op.add_column("calls", sa.Column("transfer_mode", sa.String(length=8), nullable=True))
    op.add_column("calls", sa.Column("transfer_at", sa.DateTime(), nullable=True))
    op.add_column("calls", sa.Column("transfer_result", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("transfer_result")
        batch.drop_column("transfer_at")
        batch.drop_column("transfer_mode")
        batch.drop_column("transfer_to")
