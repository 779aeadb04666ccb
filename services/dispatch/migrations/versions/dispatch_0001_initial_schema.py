"""initial schema

Revision ID: dispatch_0001
Revises:
Create Date: 2026-11-22 02:35:40.416046
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.outbox import create_notify_trigger_sql

revision: str = "dispatch_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "areas",
        sa.Column("area_code", sa.String(length=32), nullable=False),
        sa.Column("area_name", sa.String(length=100), nullable=False),
        sa.Column("station", sa.String(length=100), nullable=False),
        sa.Column("street", sa.String(length=100), nullable=False),
        sa.Column("district", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("area_code"),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_areas_station"), "areas", ["station"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_areas_street"), "areas", ["street"], unique=False, schema="dispatch")
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
        schema="dispatch",
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
        schema="dispatch",
    )
    op.create_index("ix_dispatch_outbox_created_at", "outbox", ["created_at"], unique=False, schema="dispatch")
    op.create_index(
        "ix_dispatch_outbox_pending",
        "outbox",
        ["id"],
        unique=False,
        schema="dispatch",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    for statement in create_notify_trigger_sql("dispatch"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS dispatch.outbox_notify() CASCADE")
    op.drop_index(
        "ix_dispatch_outbox_pending",
        table_name="outbox",
        schema="dispatch",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_index("ix_dispatch_outbox_created_at", table_name="outbox", schema="dispatch")
    op.drop_table("outbox", schema="dispatch")
    op.drop_table("inbox", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_areas_street"), table_name="areas", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_areas_station"), table_name="areas", schema="dispatch")
    op.drop_table("areas", schema="dispatch")
