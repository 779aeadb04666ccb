"""identity and row-level security

Revision ID: feedback_0002
Revises: feedback_0001
Create Date: 2026-11-22 02:54:44.565474
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.access_log import append_only_sql
from shared.scope import IS_ADMIN, IS_SCOPED, IS_SYSTEM, app_role_sql, rls_sql

revision: str = "feedback_0002"
down_revision: str | None = "feedback_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("object_id", sa.UUID(), nullable=False),
        sa.Column("case_id", sa.UUID(), nullable=True),
        sa.Column("fields", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="feedback",
    )
    op.create_index(op.f("ix_feedback_access_log_at"), "access_log", ["at"], unique=False, schema="feedback")
    op.create_index(op.f("ix_feedback_access_log_case_id"), "access_log", ["case_id"], unique=False, schema="feedback")
    op.create_index(
        op.f("ix_feedback_access_log_member_id"), "access_log", ["member_id"], unique=False, schema="feedback"
    )
    op.create_index(
        op.f("ix_feedback_access_log_object_id"), "access_log", ["object_id"], unique=False, schema="feedback"
    )
    op.create_table(
        "member_sessions",
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("member_id"),
        schema="feedback",
    )

    for statement in app_role_sql("feedback") + append_only_sql("feedback"):
        op.execute(statement)
    for statement in rls_sql("feedback", "access_log", f"{IS_SYSTEM} OR {IS_ADMIN}", check=IS_SCOPED):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS feedback.access_log_guard() CASCADE")
    op.drop_table("member_sessions", schema="feedback")
    op.drop_index(op.f("ix_feedback_access_log_object_id"), table_name="access_log", schema="feedback")
    op.drop_index(op.f("ix_feedback_access_log_member_id"), table_name="access_log", schema="feedback")
    op.drop_index(op.f("ix_feedback_access_log_case_id"), table_name="access_log", schema="feedback")
    op.drop_index(op.f("ix_feedback_access_log_at"), table_name="access_log", schema="feedback")
    op.drop_table("access_log", schema="feedback")
