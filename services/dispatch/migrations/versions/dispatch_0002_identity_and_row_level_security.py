"""identity and row-level security

Revision ID: dispatch_0002
Revises: dispatch_0001
Create Date: 2026-11-22 02:54:52.580808
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.access_log import append_only_sql
from shared.scope import IS_ADMIN, IS_SCOPED, IS_SYSTEM, app_role_sql, rls_sql, setting

revision: str = "dispatch_0002"
down_revision: str | None = "dispatch_0001"
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
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_access_log_at"), "access_log", ["at"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_access_log_case_id"), "access_log", ["case_id"], unique=False, schema="dispatch")
    op.create_index(
        op.f("ix_dispatch_access_log_member_id"), "access_log", ["member_id"], unique=False, schema="dispatch"
    )
    op.create_index(
        op.f("ix_dispatch_access_log_object_id"), "access_log", ["object_id"], unique=False, schema="dispatch"
    )
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
        schema="dispatch",
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("area_code", sa.String(length=32), nullable=False),
        sa.Column("station", sa.String(length=100), nullable=False),
        sa.Column("backup", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["area_code"],
            ["dispatch.areas.area_code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_teams_area_code"), "teams", ["area_code"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_teams_station"), "teams", ["station"], unique=False, schema="dispatch")
    op.create_table(
        "members",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("station", sa.String(length=100), nullable=True),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["dispatch.teams.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_members_station"), "members", ["station"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_members_team_id"), "members", ["team_id"], unique=False, schema="dispatch")
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["dispatch.members.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        schema="dispatch",
    )
    op.create_index(
        op.f("ix_dispatch_refresh_tokens_family_id"), "refresh_tokens", ["family_id"], unique=False, schema="dispatch"
    )
    op.create_index(
        op.f("ix_dispatch_refresh_tokens_member_id"), "refresh_tokens", ["member_id"], unique=False, schema="dispatch"
    )

    for statement in app_role_sql("dispatch") + append_only_sql("dispatch"):
        op.execute(statement)
    for statement in rls_sql("dispatch", "access_log", f"{IS_SYSTEM} OR {IS_ADMIN}", check=IS_SCOPED):
        op.execute(statement)
    # A member sees themself; a supervisor their station's members; admins and the login flow everyone.
    station_match = f"({setting('role')} = 'supervisor' AND station = {setting('station')})"
    for statement in rls_sql(
        "dispatch",
        "members",
        f"{IS_SYSTEM} OR {IS_ADMIN} OR {station_match} OR id::text = {setting('member_id')}",
        check=f"{IS_SYSTEM} OR {IS_ADMIN}",
    ):
        op.execute(statement)
    for table in ("refresh_tokens", "login_throttle"):
        for statement in rls_sql("dispatch", table, f"{IS_SYSTEM} OR {IS_ADMIN}"):
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS dispatch.access_log_guard() CASCADE")
    op.drop_index(op.f("ix_dispatch_refresh_tokens_member_id"), table_name="refresh_tokens", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_refresh_tokens_family_id"), table_name="refresh_tokens", schema="dispatch")
    op.drop_table("refresh_tokens", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_members_team_id"), table_name="members", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_members_station"), table_name="members", schema="dispatch")
    op.drop_table("members", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_teams_station"), table_name="teams", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_teams_area_code"), table_name="teams", schema="dispatch")
    op.drop_table("teams", schema="dispatch")
    op.drop_table("login_throttle", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_access_log_object_id"), table_name="access_log", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_access_log_member_id"), table_name="access_log", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_access_log_case_id"), table_name="access_log", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_access_log_at"), table_name="access_log", schema="dispatch")
    op.drop_table("access_log", schema="dispatch")
