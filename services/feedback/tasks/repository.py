"""Every query of the task read model; writes are idempotent so dispatch.events can be replayed."""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.tasks.models import TaskView
from shared.events import TaskCreatedV1


async def add(session: AsyncSession, event: TaskCreatedV1) -> None:
    values = {
        "task_id": event.task_id, "case_id": event.case_id, "tier": event.tier, "attempt": event.attempt,
        "area_code": event.area_code, "station": event.station, "team_id": event.team_id,
        "created_at": event.created_at, "due_at": event.due_at,
    }  # fmt: skip
    await session.exec(insert(TaskView).values(**values).on_conflict_do_nothing())
    await (await session.connection()).execute(_COMPLETED_FROM_OUTCOMES.bindparams(task_id=event.task_id))


# On a rebuild the task's outcomes are already there; a correction does not move the time it was done.
_COMPLETED_FROM_OUTCOMES = text("""
    UPDATE feedback.tasks t SET completed_at = o.first
      FROM (SELECT min(recorded_at) AS first FROM feedback.outcomes WHERE task_id = :task_id) o
     WHERE t.task_id = :task_id AND o.first IS NOT NULL AND (t.completed_at IS NULL OR t.completed_at > o.first)
""")


async def completed(session: AsyncSession, task_id: uuid.UUID, at: datetime) -> None:
    await session.exec(
        update(TaskView)
        .where(col(TaskView.task_id) == task_id)
        .values(completed_at=sa.func.least(sa.func.coalesce(col(TaskView.completed_at), at), at))
    )


async def assign(session: AsyncSession, task_id: uuid.UUID, team_id: uuid.UUID | None) -> str | None:
    """Returns the task's tier (None if the task is unknown)."""
    stmt = (
        update(TaskView).where(col(TaskView.task_id) == task_id).values(team_id=team_id).returning(col(TaskView.tier))
    )
    return (await session.exec(stmt)).scalar_one_or_none()


async def sms_accepted(session: AsyncSession, task_id: uuid.UUID, at: datetime) -> None:
    await session.exec(
        update(TaskView).where(col(TaskView.task_id) == task_id, col(TaskView.sms_at).is_(None)).values(sms_at=at)
    )
    await completed(session, task_id, at)


async def breached(session: AsyncSession, task_id: uuid.UUID, at: datetime) -> None:
    await session.exec(
        update(TaskView)
        .where(col(TaskView.task_id) == task_id, col(TaskView.breached_at).is_(None))
        .values(breached_at=at)
    )
