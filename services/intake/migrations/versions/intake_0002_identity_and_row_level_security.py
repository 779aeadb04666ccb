"""identity and row-level security

Revision ID: intake_0002
Revises: intake_0001
Create Date: 2026-11-22 02:54:44.165992
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.access_log import append_only_sql
from shared.scope import AREAS, IS_ADMIN, IS_SCOPED, IS_SYSTEM, app_role_sql, rls_sql, setting

revision: str = "intake_0002"
down_revision: str | None = "intake_0001"
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
        schema="intake",
    )
    op.create_index(op.f("ix_intake_access_log_at"), "access_log", ["at"], unique=False, schema="intake")
    op.create_index(op.f("ix_intake_access_log_case_id"), "access_log", ["case_id"], unique=False, schema="intake")
    op.create_index(op.f("ix_intake_access_log_member_id"), "access_log", ["member_id"], unique=False, schema="intake")
    op.create_index(op.f("ix_intake_access_log_object_id"), "access_log", ["object_id"], unique=False, schema="intake")
    op.create_table(
        "member_sessions",
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("member_id"),
        schema="intake",
    )

    for statement in app_role_sql("intake") + append_only_sql("intake"):
        op.execute(statement)
    for statement in rls_sql("intake", "access_log", f"{IS_SYSTEM} OR {IS_ADMIN}", check=IS_SCOPED):
        op.execute(statement)
    # A source sees what it posted; a member (not a grid worker) the warnings of their areas; admins all.
    source_match = f"({setting('role')} = 'source' AND source = {setting('source')})"
    area_match = (
        f"({setting('role')} IN ('officer', 'auxiliary', 'operator', 'supervisor') AND area_code = ANY({AREAS}))"
    )
    for statement in rls_sql(
        "intake",
        "warnings",
        f"{IS_SYSTEM} OR {IS_ADMIN} OR {source_match} OR {area_match}",
        check=f"{IS_SYSTEM} OR {source_match}",
    ):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS intake.access_log_guard() CASCADE")
    op.drop_table("member_sessions", schema="intake")
    op.drop_index(op.f("ix_intake_access_log_object_id"), table_name="access_log", schema="intake")
    op.drop_index(op.f("ix_intake_access_log_member_id"), table_name="access_log", schema="intake")
    op.drop_index(op.f("ix_intake_access_log_case_id"), table_name="access_log", schema="intake")
    op.drop_index(op.f("ix_intake_access_log_at"), table_name="access_log", schema="intake")
    op.drop_table("access_log", schema="intake")
