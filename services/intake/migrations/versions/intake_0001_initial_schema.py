"""initial schema

Revision ID: intake_0001
Revises:
Create Date: 2026-11-22 02:35:40.269153
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.outbox import create_notify_trigger_sql

revision: str = "intake_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "areas",
        sa.Column("area_code", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("area_code"),
        schema="intake",
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
        schema="intake",
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
        schema="intake",
    )
    op.create_index("ix_intake_outbox_created_at", "outbox", ["created_at"], unique=False, schema="intake")
    op.create_index(
        "ix_intake_outbox_pending",
        "outbox",
        ["id"],
        unique=False,
        schema="intake",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "sources",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("rate_per_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        schema="intake",
    )
    op.create_table(
        "warnings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("area_code", sa.String(length=32), nullable=True),
        sa.Column("assigned", sa.Boolean(), nullable=False),
        sa.Column("fraud_type", sa.String(), nullable=False),
        sa.Column("risk_level", sa.String(), nullable=False),
        sa.Column("in_progress", sa.Boolean(), nullable=False),
        sa.Column("amount_at_risk", sa.Float(), nullable=True),
        sa.Column("subject_key", sa.String(length=64), nullable=False),
        sa.Column("subject", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "external_id", name="uq_warnings_source_external_id"),
        schema="intake",
    )
    op.create_index(op.f("ix_intake_warnings_received_at"), "warnings", ["received_at"], unique=False, schema="intake")
    op.create_index(op.f("ix_intake_warnings_subject_key"), "warnings", ["subject_key"], unique=False, schema="intake")
    op.create_table(
        "source_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["intake.sources.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
        schema="intake",
    )
    op.create_index(
        op.f("ix_intake_source_keys_source_id"), "source_keys", ["source_id"], unique=False, schema="intake"
    )
    for statement in create_notify_trigger_sql("intake"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS intake.outbox_notify() CASCADE")
    op.drop_index(op.f("ix_intake_source_keys_source_id"), table_name="source_keys", schema="intake")
    op.drop_table("source_keys", schema="intake")
    op.drop_index(op.f("ix_intake_warnings_subject_key"), table_name="warnings", schema="intake")
    op.drop_index(op.f("ix_intake_warnings_received_at"), table_name="warnings", schema="intake")
    op.drop_table("warnings", schema="intake")
    op.drop_table("sources", schema="intake")
    op.drop_index(
        "ix_intake_outbox_pending",
        table_name="outbox",
        schema="intake",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_index("ix_intake_outbox_created_at", table_name="outbox", schema="intake")
    op.drop_table("outbox", schema="intake")
    op.drop_table("inbox", schema="intake")
    op.drop_table("areas", schema="intake")
