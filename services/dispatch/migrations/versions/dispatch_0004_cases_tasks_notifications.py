"""cases tasks notifications

Revision ID: dispatch_0004
Revises: dispatch_0003
Create Date: 2026-11-22 03:35:23.209233
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.scope import IS_ADMIN, IS_SCOPED, IS_SYSTEM, rls_sql, setting, task_scope

revision: str = "dispatch_0004"
down_revision: str | None = "dispatch_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject_key", sa.String(length=64), nullable=False),
        sa.Column("subject", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("area_code", sa.String(length=32), nullable=True),
        sa.Column("station", sa.String(length=100), nullable=True),
        sa.Column("street", sa.String(length=100), nullable=True),
        sa.Column("risk_level", sa.String(length=16), nullable=False),
        sa.Column("fraud_type", sa.String(length=32), nullable=False),
        sa.Column("in_progress", sa.Boolean(), nullable=False),
        sa.Column("residency", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("closure", sa.String(length=32), nullable=True),
        sa.Column("rewarned", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("policy_version_ids", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("policy", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_warning_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_cases_area_code"), "cases", ["area_code"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_cases_closed_at"), "cases", ["closed_at"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_cases_opened_at"), "cases", ["opened_at"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_cases_state"), "cases", ["state"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_cases_station"), "cases", ["station"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_cases_subject_key"), "cases", ["subject_key"], unique=False, schema="dispatch")
    op.create_table(
        "idempotency_keys",
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "key"),
        schema="dispatch",
    )
    op.create_index(
        op.f("ix_dispatch_idempotency_keys_created_at"),
        "idempotency_keys",
        ["created_at"],
        unique=False,
        schema="dispatch",
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipient_kind", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_notifications_at"), "notifications", ["at"], unique=False, schema="dispatch")
    op.create_index(
        op.f("ix_dispatch_notifications_case_id"), "notifications", ["case_id"], unique=False, schema="dispatch"
    )
    op.create_index(
        op.f("ix_dispatch_notifications_recipient"), "notifications", ["recipient"], unique=False, schema="dispatch"
    )
    op.create_index(
        op.f("ix_dispatch_notifications_task_id"), "notifications", ["task_id"], unique=False, schema="dispatch"
    )
    op.create_table(
        "case_transitions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["dispatch.cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="dispatch",
    )
    op.create_index(
        op.f("ix_dispatch_case_transitions_case_id"), "case_transitions", ["case_id"], unique=False, schema="dispatch"
    )
    op.create_table(
        "case_warnings",
        sa.Column("warning_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("risk_level", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["dispatch.cases.id"],
        ),
        sa.PrimaryKeyConstraint("warning_id"),
        schema="dispatch",
    )
    op.create_index(
        op.f("ix_dispatch_case_warnings_case_id"), "case_warnings", ["case_id"], unique=False, schema="dispatch"
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("area_code", sa.String(length=32), nullable=True),
        sa.Column("station", sa.String(length=100), nullable=True),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ack_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(length=64), nullable=True),
        sa.Column("ack_misses", sa.Integer(), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("position", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["dispatch.cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_tasks_area_code"), "tasks", ["area_code"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_tasks_case_id"), "tasks", ["case_id"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_tasks_created_at"), "tasks", ["created_at"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_tasks_station"), "tasks", ["station"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_tasks_status"), "tasks", ["status"], unique=False, schema="dispatch")
    op.create_index(op.f("ix_dispatch_tasks_team_id"), "tasks", ["team_id"], unique=False, schema="dispatch")

    # Tables made since 0002 get the app role's rights through the default privileges set there.
    member = f"{setting('role')}"
    station_supervisor = f"({member} = 'supervisor' AND station = {setting('station')})"
    for statement in rls_sql("dispatch", "tasks", task_scope()):
        op.execute(statement)
    # A case is visible to whoever sees one of its tasks (the subquery is itself held to the tasks policy);
    # every supervisor sees the district's unassigned queue, to assign from it.
    case_scope = (
        f"{IS_SYSTEM} OR {IS_ADMIN} OR {station_supervisor}"
        f" OR ({member} = 'supervisor' AND area_code IS NULL)"
        " OR EXISTS (SELECT 1 FROM dispatch.tasks t WHERE t.case_id = cases.id)"
    )
    for statement in rls_sql("dispatch", "cases", case_scope):
        op.execute(statement)
    for table in ("case_warnings", "case_transitions"):
        via_case = "EXISTS (SELECT 1 FROM dispatch.cases c WHERE c.id = case_id)"
        for statement in rls_sql("dispatch", table, f"{IS_SYSTEM} OR {via_case}", check=IS_SCOPED):
            op.execute(statement)
    # the development notifier's record: admins, and supervisors for their station's alerts
    station_alerts = f"({member} = 'supervisor' AND recipient = {setting('station')})"
    for statement in rls_sql(
        "dispatch", "notifications", f"{IS_SYSTEM} OR {IS_ADMIN} OR {station_alerts}", check=IS_SCOPED
    ):
        op.execute(statement)
    for statement in rls_sql("dispatch", "idempotency_keys", f"member_id::text = {setting('member_id')}"):
        op.execute(statement)


def downgrade() -> None:
    op.drop_index(op.f("ix_dispatch_tasks_team_id"), table_name="tasks", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_tasks_status"), table_name="tasks", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_tasks_station"), table_name="tasks", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_tasks_created_at"), table_name="tasks", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_tasks_case_id"), table_name="tasks", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_tasks_area_code"), table_name="tasks", schema="dispatch")
    op.drop_table("tasks", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_case_warnings_case_id"), table_name="case_warnings", schema="dispatch")
    op.drop_table("case_warnings", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_case_transitions_case_id"), table_name="case_transitions", schema="dispatch")
    op.drop_table("case_transitions", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_notifications_task_id"), table_name="notifications", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_notifications_recipient"), table_name="notifications", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_notifications_case_id"), table_name="notifications", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_notifications_at"), table_name="notifications", schema="dispatch")
    op.drop_table("notifications", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_idempotency_keys_created_at"), table_name="idempotency_keys", schema="dispatch")
    op.drop_table("idempotency_keys", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_cases_subject_key"), table_name="cases", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_cases_station"), table_name="cases", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_cases_state"), table_name="cases", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_cases_opened_at"), table_name="cases", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_cases_closed_at"), table_name="cases", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_cases_area_code"), table_name="cases", schema="dispatch")
    op.drop_table("cases", schema="dispatch")
