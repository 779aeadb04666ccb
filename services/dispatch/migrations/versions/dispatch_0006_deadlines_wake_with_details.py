"""deadlines: notifications say which kind, how soon and how many

The old trigger's empty notification woke every timer engine of every dispatch process on each commit that wrote
a deadline (each opened case writes several), and each ran a claim and a look-ahead transaction for nothing.

Revision ID: dispatch_0006
Revises: dispatch_0005
Create Date: 2026-11-28 15:10:00
"""

from collections.abc import Sequence

from alembic import op

from shared.timers import wake_trigger_sql

revision: str = "dispatch_0006"
down_revision: str | None = "dispatch_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP TRIGGER deadlines_notify ON dispatch.deadlines")
    op.execute("DROP FUNCTION dispatch.deadlines_notify()")
    for statement in wake_trigger_sql("dispatch"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER deadlines_wake ON dispatch.deadlines")
    op.execute("DROP FUNCTION dispatch.deadlines_wake()")
    op.execute(
        """CREATE FUNCTION dispatch.deadlines_notify() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_notify('quanzu_deadlines_dispatch', ''); RETURN NULL; END $$"""
    )
    op.execute(
        """CREATE TRIGGER deadlines_notify AFTER INSERT ON dispatch.deadlines
           FOR EACH STATEMENT EXECUTE FUNCTION dispatch.deadlines_notify()"""
    )
