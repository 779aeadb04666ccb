"""policies and deadlines

Revision ID: dispatch_0003
Revises: dispatch_0002
Create Date: 2026-11-22 03:25:32.692324
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.timers import notify_trigger_sql

revision: str = "dispatch_0003"
down_revision: str | None = "dispatch_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deadlines",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("ref", sa.UUID(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        schema="dispatch",
    )
    op.create_index(
        "ix_dispatch_deadlines_pending",
        "deadlines",
        ["due_at"],
        unique=False,
        schema="dispatch",
        postgresql_where=sa.text("fired_at IS NULL"),
    )
    op.create_index("ix_dispatch_deadlines_ref", "deadlines", ["ref"], unique=False, schema="dispatch")
    op.create_table(
        "policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "version", name="uq_policies_scope_version"),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_policies_scope"), "policies", ["scope"], unique=False, schema="dispatch")
    for statement in notify_trigger_sql("dispatch"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS dispatch.deadlines_notify() CASCADE")
    op.drop_index(op.f("ix_dispatch_policies_scope"), table_name="policies", schema="dispatch")
    op.drop_table("policies", schema="dispatch")
    op.drop_index("ix_dispatch_deadlines_ref", table_name="deadlines", schema="dispatch")
    op.drop_index(
        "ix_dispatch_deadlines_pending",
        table_name="deadlines",
        schema="dispatch",
        postgresql_where=sa.text("fired_at IS NULL"),
    )
    op.drop_table("deadlines", schema="dispatch")
