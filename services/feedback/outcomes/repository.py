import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.outcomes.models import Outcome
from services.feedback.tasks.models import TaskView


async def task_for_update(session: AsyncSession, task_id: uuid.UUID) -> TaskView | None:
    stmt = select(TaskView).where(TaskView.task_id == task_id).with_for_update()
    return (await session.exec(stmt)).first()


async def current(session: AsyncSession, task_id: uuid.UUID) -> Outcome | None:
    stmt = select(Outcome).where(Outcome.task_id == task_id, col(Outcome.superseded_by).is_(None))
    return (await session.exec(stmt)).first()


async def of_task(session: AsyncSession, task_id: uuid.UUID) -> list[Outcome]:
    """Every outcome of a task, the original first: the correction history."""
    stmt = select(Outcome).where(Outcome.task_id == task_id).order_by(col(Outcome.created_at))
    return list((await session.exec(stmt)).all())
