"""Recording an outcome: one per task, for a task the member may act on, published to feedback.outcomes."""

from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.db import OUTBOX
from services.feedback.outcomes.models import Outcome, OutcomeCreate
from services.feedback.tasks.models import TaskView
from shared.auth import Principal
from shared.events import Envelope, OutcomeRecordedV1, Topic
from shared.outbox import enqueue

EVENT_SOURCE = "quanzu/feedback"


class NotVisible(Exception):
    pass


class Mismatch(Exception):
    pass


class AlreadyRecorded(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"task {outcome.task_id} already has an outcome")
        self.outcome = outcome


async def record(session: AsyncSession, principal: Principal, data: OutcomeCreate, now: datetime) -> Outcome:
    task = await session.get(TaskView, data.task_id)  # row-level security: only tasks the member may act on
    if task is None:
        raise NotVisible(str(data.task_id))
    if task.tier != data.kind:
        raise Mismatch(f"the task is a {task.tier} task, not {data.kind}")
    existing = (await session.exec(select(Outcome).where(Outcome.task_id == task.task_id))).first()
    if existing is not None:
        raise AlreadyRecorded(existing)
    outcome = Outcome(
        task_id=task.task_id,
        case_id=task.case_id,
        area_code=task.area_code,
        kind=data.kind,
        call_result=data.call_result,
        dissuasion_result=data.dissuasion_result,
        loss_prevented=data.loss_prevented,
        note=data.note,
        checklist=data.checklist.model_dump() if data.checklist else None,
        position=data.position.model_dump() if data.position else None,
        recorded_at=data.recorded_at or now,
        recorded_by=principal.username,
    )
    session.add(outcome)
    await session.flush()
    event = OutcomeRecordedV1(
        outcome_id=outcome.id,
        task_id=task.task_id,
        case_id=task.case_id,
        kind=data.kind,
        call_result=data.call_result,
        dissuasion_result=data.dissuasion_result,
        recorded_at=outcome.recorded_at,
        recorded_by=principal.username,
    )
    await enqueue(session, OUTBOX, Topic.FEEDBACK_OUTCOMES, str(task.case_id),
                  Envelope.new(event.TYPE, EVENT_SOURCE, event, subject=str(task.case_id)))  # fmt: skip
    return outcome
