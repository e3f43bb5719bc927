"""The post-call webhook's outbox: call summaries waiting to be delivered.

One row per delivery of one call's summary to one receiver (issue 15), queued
in the same transaction as the call's final row and claimed by whichever
replica sends it (phonebridge/webhooks/outbox.py). Expand only: a new table no
older replica reads or writes.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_webhook_outbox_call_sid", "webhook_outbox", ["call_sid"])
    op.create_index("ix_webhook_outbox_due", "webhook_outbox", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_due", table_name="webhook_outbox")
    op.drop_index("ix_webhook_outbox_call_sid", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
