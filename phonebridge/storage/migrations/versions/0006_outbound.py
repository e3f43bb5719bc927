"""Outbound calls and campaigns: attempts, campaigns, contacts, do-not-call numbers.

The tables phonebridge/outbound/store.py reads and writes (docs/outbound.md),
in the call index so every replica sees one campaign state and exactly one
of them claims a contact. Expand only: new tables no older replica touches.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "outbound_attempts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("call_sid", sa.String(64), unique=True),
        sa.Column("campaign_id", sa.String(40)),
        sa.Column("contact_id", sa.Integer()),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("to_number", sa.String(32), nullable=False),
        sa.Column("from_number", sa.String(32), nullable=False),
        sa.Column("persona", sa.String(128), nullable=False),
        sa.Column("placed_by", sa.String(160), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("answered_by", sa.String(32)),
        sa.Column("error", sa.Text()),
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime()),
    )
    for column in ("campaign_id", "contact_id", "state", "created_at"):
        op.create_index(f"ix_outbound_attempts_{column}", "outbound_attempts", [column])

    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("persona", sa.String(128), nullable=False),
        sa.Column("from_number", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(160), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("daily_cap", sa.Integer()),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_seconds", sa.Float(), nullable=False),
        sa.Column("window_start", sa.String(5), nullable=False),
        sa.Column("window_end", sa.String(5), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_campaigns_state", "campaigns", ["state"])

    op.create_table(
        "campaign_contacts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("time_zone", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    for column in ("campaign_id", "state"):
        op.create_index(f"ix_campaign_contacts_{column}", "campaign_contacts", [column])

    op.create_table(
        "dnc_numbers",
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("added_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("dnc_numbers", "campaign_contacts", "campaigns", "outbound_attempts"):
        op.drop_table(table)
