"""Baseline: the ``calls`` table as ``metadata.create_all`` made it before migrations.

A database made by that older code (the table, no ``alembic_version``) is
stamped with this revision instead of running it (``migrate.py``), so the two
must stay identical: tests/storage/test_storage_migrations.py compares them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_sid", sa.String(64), primary_key=True),
        sa.Column("stream_sid", sa.String(64)),
        sa.Column("from_number", sa.String(64), nullable=False),
        sa.Column("to_number", sa.String(64), nullable=False),
        sa.Column("persona", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("model_ready_at", sa.DateTime()),
        sa.Column("ended_at", sa.DateTime()),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("end_reason", sa.String(64)),
        sa.Column("ended_by", sa.String(32)),
        sa.Column("model_socket_seconds", sa.Float()),
        sa.Column("recording_path", sa.Text()),
        sa.Column("transcript_path", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("files_expired_at", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    for column in ("persona", "status", "started_at", "ended_at", "end_reason"):
        op.create_index(f"ix_calls_{column}", "calls", [column])


def downgrade() -> None:
    # Drops every call row: `phonebridge db downgrade base` is for throw-away databases.
    op.drop_table("calls")
