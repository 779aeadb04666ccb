"""Recording an outcome: one current outcome per task, for a task the member may act on, published to
feedback.outcomes. A correction replaces the current outcome and keeps it, with who corrected it and why."""

import uuid
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback import metrics
from services.feedback.cases import repository as cases
from services.feedback.db import OUTBOX
from services.feedback.outcomes import repository
from services.feedback.outcomes.models import Outcome, OutcomeCreate
from services.feedback.tasks import repository as tasks
from services.feedback.tasks.models import TaskView
from shared.auth import Principal
from shared.db import set_local
from shared.events import Envelope, OutcomeRecordedV1, Topic
from shared.outbox import enqueue
from shared.scope import principal_settings, system_settings

EVENT_SOURCE = "quanzu/feedback"
#: How far ahead of the server's clock a phone's recorded_at may be (clock skew), before it is refused.
CLOCK_SKEW = timedelta(minutes=5)


class NotVisible(Exception):
    pass


class Mismatch(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AlreadyRecorded(Exception):
    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


async def record(session: AsyncSession, principal: Principal, data: OutcomeCreate, now: datetime) -> Outcome:
    # Row-level security: only tasks the member may act on. The row lock serialises outcomes for one task, so
    # two phones recording at once get one 201 and one 409, never two current outcomes.
    task = await repository.task_for_update(session, data.task_id)
    if task is None:
        raise NotVisible(str(data.task_id))
    if task.tier != data.kind:
        raise Mismatch("kind", f"the task is a {task.tier} task, not {data.kind}")
    recorded_at = data.recorded_at or now
    if recorded_at > now + CLOCK_SKEW:
        raise Mismatch("recorded_at", "recorded_at is in the future")
    if recorded_at < task.created_at - CLOCK_SKEW:
        raise Mismatch("recorded_at", "recorded_at is before the task was created")
    current = await repository.current(session, task.task_id)
    if data.corrects is None and current is not None:
        raise AlreadyRecorded(current, f"task {task.task_id} already has an outcome; send a correction to change it")
    if data.corrects is not None and (current is None or current.id != data.corrects):
        if current is None:
            raise Mismatch("corrects", f"outcome {data.corrects} is not an outcome of task {task.task_id}")
        raise AlreadyRecorded(current, f"outcome {data.corrects} is not the task's current outcome")
    outcome = _outcome(task, data, recorded_at, principal.username)
    if current is not None:
        # The old row leaves the "one current outcome" index before the new one enters it.
        current.superseded_by, current.superseded_at = outcome.id, now
        session.add(current)
        await session.flush()
        metrics.OUTCOME_CORRECTIONS.labels(data.kind).inc()
    session.add(outcome)
    await session.flush()
    # The rates' per-case and per-task summaries are the service's bookkeeping, kept whatever the member may
    # see of the case (a backup team from another area sees the task, not the case): written in its own scope.
    await set_local(session, system_settings())
    await tasks.completed(session, task.task_id, recorded_at)
    await cases.refresh_summary(session, task.case_id)
    await set_local(session, principal_settings(principal))
    metrics.OUTCOMES.labels(data.kind, data.call_result or data.dissuasion_result or "none").inc()
    event = OutcomeRecordedV1(
        outcome_id=outcome.id, task_id=task.task_id, case_id=task.case_id, kind=data.kind,
        call_result=data.call_result, dissuasion_result=data.dissuasion_result, recorded_at=outcome.recorded_at,
        recorded_by=principal.username, corrects=data.corrects, correction_reason=data.correction_reason,
    )  # fmt: skip
    await enqueue(session, OUTBOX, Topic.FEEDBACK_OUTCOMES, str(task.case_id),
                  Envelope.new(event.TYPE, EVENT_SOURCE, event, subject=str(task.case_id)))  # fmt: skip
    return outcome


def _outcome(task: TaskView, data: OutcomeCreate, recorded_at: datetime, username: str) -> Outcome:
    return Outcome(
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
        recorded_at=recorded_at,
        recorded_by=username,
        corrects=data.corrects,
        correction_reason=data.correction_reason,
    )


async def history(session: AsyncSession, task_id: uuid.UUID) -> list[Outcome]:
    if await session.get(TaskView, task_id) is None:  # row-level security: a task the caller may see
        raise NotVisible(str(task_id))
    return await repository.of_task(session, task_id)
