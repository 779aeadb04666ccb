"""initial schema

Revision ID: feedback_0001
Revises:
Create Date: 2026-11-22 02:35:40.531951
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.outbox import create_notify_trigger_sql

revision: str = "feedback_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
        schema="feedback",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
        schema="feedback",
    )
    op.create_index("ix_feedback_outbox_created_at", "outbox", ["created_at"], unique=False, schema="feedback")
    op.create_index(
        "ix_feedback_outbox_pending",
        "outbox",
        ["id"],
        unique=False,
        schema="feedback",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    for statement in create_notify_trigger_sql("feedback"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS feedback.outbox_notify() CASCADE")
    op.drop_index(
        "ix_feedback_outbox_pending",
        table_name="outbox",
        schema="feedback",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_index("ix_feedback_outbox_created_at", table_name="outbox", schema="feedback")
    op.drop_table("outbox", schema="feedback")
    op.drop_table("inbox", schema="feedback")
