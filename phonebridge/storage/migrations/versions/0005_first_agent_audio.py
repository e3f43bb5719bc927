"""Seconds from the stream's start to the first agent audio the caller could hear.

The operator overview's "time to first agent audio" (p50/p95). NULL for rows
written before it was measured and for calls whose agent never spoke.
Expand only: a nullable column no older replica writes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("first_agent_audio_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("first_agent_audio_seconds")
