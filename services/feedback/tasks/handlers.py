"""Keeps the task read model from dispatch.events; idempotent (upserts), so the topic can be replayed."""

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.tasks.models import TaskView
from shared.events import Envelope, TaskAssignedV1, TaskCreatedV1

GROUP = "feedback-dispatch-events"


async def on_dispatch_event(session: AsyncSession, envelope: Envelope) -> None:
    if envelope.type == TaskCreatedV1.TYPE:
        event = TaskCreatedV1.model_validate(envelope.data)
        values = {
            "task_id": event.task_id, "case_id": event.case_id, "tier": event.tier, "attempt": event.attempt,
            "area_code": event.area_code, "station": event.station, "team_id": event.team_id,
            "created_at": event.created_at, "due_at": event.due_at,
        }  # fmt: skip
        await session.exec(insert(TaskView).values(**values).on_conflict_do_nothing())
    elif envelope.type == TaskAssignedV1.TYPE:
        assigned = TaskAssignedV1.model_validate(envelope.data)
        await session.exec(
            update(TaskView).where(col(TaskView.task_id) == assigned.task_id).values(team_id=assigned.team_id)
        )
