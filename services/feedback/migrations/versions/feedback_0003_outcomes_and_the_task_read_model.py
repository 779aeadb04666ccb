"""outcomes and the task read model

Revision ID: feedback_0003
Revises: feedback_0002
Create Date: 2026-11-22 03:56:52.890608
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.scope import IS_ADMIN, IS_SYSTEM, rls_sql, setting, task_scope

revision: str = "feedback_0003"
down_revision: str | None = "feedback_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("member_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "key"),
        schema="feedback",
    )
    op.create_index(
        op.f("ix_feedback_idempotency_keys_created_at"),
        "idempotency_keys",
        ["created_at"],
        unique=False,
        schema="feedback",
    )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("area_code", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("call_result", sa.String(length=32), nullable=True),
        sa.Column("dissuasion_result", sa.String(length=32), nullable=True),
        sa.Column("loss_prevented", sa.Float(), nullable=True),
        sa.Column("note", sa.String(length=2000), nullable=True),
        sa.Column("checklist", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("position", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id"),
        schema="feedback",
    )
    op.create_index(op.f("ix_feedback_outcomes_area_code"), "outcomes", ["area_code"], unique=False, schema="feedback")
    op.create_index(op.f("ix_feedback_outcomes_case_id"), "outcomes", ["case_id"], unique=False, schema="feedback")
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("area_code", sa.String(length=32), nullable=True),
        sa.Column("station", sa.String(length=100), nullable=True),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("task_id"),
        schema="feedback",
    )
    op.create_index(op.f("ix_feedback_tasks_area_code"), "tasks", ["area_code"], unique=False, schema="feedback")
    op.create_index(op.f("ix_feedback_tasks_case_id"), "tasks", ["case_id"], unique=False, schema="feedback")

    for statement in rls_sql("feedback", "tasks", task_scope()):
        op.execute(statement)
    # an outcome is seen by whoever sees its task (admins and supervisors read them for the rates)
    via_task = "EXISTS (SELECT 1 FROM feedback.tasks t WHERE t.task_id = outcomes.task_id)"
    for statement in rls_sql("feedback", "outcomes", f"{IS_SYSTEM} OR {IS_ADMIN} OR {via_task}"):
        op.execute(statement)
    for statement in rls_sql("feedback", "idempotency_keys", f"member_id::text = {setting('member_id')}"):
        op.execute(statement)


def downgrade() -> None:
    op.drop_index(op.f("ix_feedback_tasks_case_id"), table_name="tasks", schema="feedback")
    op.drop_index(op.f("ix_feedback_tasks_area_code"), table_name="tasks", schema="feedback")
    op.drop_table("tasks", schema="feedback")
    op.drop_index(op.f("ix_feedback_outcomes_case_id"), table_name="outcomes", schema="feedback")
    op.drop_index(op.f("ix_feedback_outcomes_area_code"), table_name="outcomes", schema="feedback")
    op.drop_table("outcomes", schema="feedback")
    op.drop_index(op.f("ix_feedback_idempotency_keys_created_at"), table_name="idempotency_keys", schema="feedback")
    op.drop_table("idempotency_keys", schema="feedback")
