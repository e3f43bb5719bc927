"""Cluster columns: which replica holds a call, and the call's audio rate.

Expand only: both columns can be absent from an older replica's INSERT.
``replica`` is NULL for a single process (and for every row made before);
``sample_rate`` defaults to 8000 in the database, the rate every older
replica records at.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("replica", sa.String(64), nullable=True))
    op.add_column(
        "calls",
        sa.Column("sample_rate", sa.Integer(), nullable=False, server_default=sa.text("8000")),
    )
    op.create_index("ix_calls_replica", "calls", ["replica"])


def downgrade() -> None:
    op.drop_index("ix_calls_replica", table_name="calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("sample_rate")
        batch.drop_column("replica")
