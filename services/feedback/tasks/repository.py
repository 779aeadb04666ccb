"""Every query of the task read model; writes are idempotent so dispatch.events can be replayed."""

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.events import TaskCreatedV1

# Prepared `text` statements with plain parameters, as the case read model's (services.feedback.cases.repository).
# A new task's completion is its earliest outcome's time if outcomes came first (a rebuild); a correction does not
# move the time it was done.
_ADD = text("""
    INSERT INTO feedback.tasks (task_id, case_id, tier, attempt, area_code, station, team_id, created_at, due_at,
                                completed_at)
    SELECT :task_id, :case_id, :tier, :attempt, :area_code, :station, :team_id, :created_at, :due_at,
           (SELECT min(recorded_at) FROM feedback.outcomes WHERE task_id = :task_id)
    ON CONFLICT (task_id) DO UPDATE SET completed_at = excluded.completed_at
     WHERE excluded.completed_at IS NOT NULL
       AND (feedback.tasks.completed_at IS NULL OR feedback.tasks.completed_at > excluded.completed_at)
""")
_COMPLETED = text("""
    UPDATE feedback.tasks SET completed_at = least(coalesce(completed_at, :at), :at) WHERE task_id = :task_id
""")
_ASSIGN = text("UPDATE feedback.tasks SET team_id = :team_id WHERE task_id = :task_id RETURNING tier")
_SMS_ACCEPTED = text("""
    UPDATE feedback.tasks SET sms_at = coalesce(sms_at, :at), completed_at = least(coalesce(completed_at, :at), :at)
     WHERE task_id = :task_id
""")
_BREACHED = text("UPDATE feedback.tasks SET breached_at = :at WHERE task_id = :task_id AND breached_at IS NULL")


async def add(session: AsyncSession, event: TaskCreatedV1) -> None:
    values = {
        "task_id": event.task_id, "case_id": event.case_id, "tier": event.tier, "attempt": event.attempt,
        "area_code": event.area_code, "station": event.station, "team_id": event.team_id,
        "created_at": event.created_at, "due_at": event.due_at,
    }  # fmt: skip
    await (await session.connection()).execute(_ADD, values)


async def completed(session: AsyncSession, task_id: uuid.UUID, at: datetime) -> None:
    await (await session.connection()).execute(_COMPLETED, {"task_id": task_id, "at": at})


async def assign(session: AsyncSession, task_id: uuid.UUID, team_id: uuid.UUID | None) -> str | None:
    """Returns the task's tier (None if the task is unknown)."""
    tier = (await (await session.connection()).execute(_ASSIGN, {"task_id": task_id, "team_id": team_id})).scalar()
    return None if tier is None else str(tier)


async def sms_accepted(session: AsyncSession, task_id: uuid.UUID, at: datetime) -> None:
    """The first SMS accepted for the task; it is done (for an SMS task) at the earliest of that and its outcomes."""
    await (await session.connection()).execute(_SMS_ACCEPTED, {"task_id": task_id, "at": at})


async def breached(session: AsyncSession, task_id: uuid.UUID, at: datetime) -> None:
    await (await session.connection()).execute(_BREACHED, {"task_id": task_id, "at": at})
