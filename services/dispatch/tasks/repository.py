from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas.models import Area
from services.dispatch.cases.models import Case, CaseWarning
from services.dispatch.tasks.models import OPEN_STATUSES, Task
from services.dispatch.teams.models import Team
from shared.db import remembered


async def with_cases(
    session: AsyncSession, task_ids: Sequence[uuid.UUID], *, lock: Sequence[type[Task] | type[Case]] = ()
) -> dict[uuid.UUID, tuple[Task, Case]]:
    """The tasks, each with its case, in one query; `lock` names the rows to lock (the tasks, their cases, or both).
    Locked in the cases' and tasks' order, so that two transactions locking overlapping sets wait for each other
    instead of deadlocking."""
    if not task_ids:
        return {}
    stmt = (
        select(Task, Case)
        .join(Case, col(Case.id) == col(Task.case_id))
        .where(col(Task.id).in_(task_ids))
        .order_by(col(Case.id), col(Task.id))
    )
    if lock:
        # populate_existing: rows read earlier in the transaction are refreshed with what the locks were taken on
        stmt = stmt.with_for_update(of=list(lock)).execution_options(populate_existing=True)
    return {task.id: (task, case) for task, case in (await session.exec(stmt)).all()}


async def with_case(
    session: AsyncSession, task_id: uuid.UUID, *, lock: Sequence[type[Task] | type[Case]] = ()
) -> tuple[Task, Case] | None:
    return (await with_cases(session, [task_id], lock=lock)).get(task_id)


async def open_tasks_of(session: AsyncSession, case_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Task]]:
    """The cases' open tasks, oldest first, in one query; a case without open tasks has an empty list."""
    found: dict[uuid.UUID, list[Task]] = {case_id: [] for case_id in case_ids}
    if case_ids:
        stmt = select(Task).where(col(Task.case_id).in_(case_ids), col(Task.status).in_(OPEN_STATUSES))
        for task in (await session.exec(stmt.order_by(col(Task.created_at)))).all():
            found[task.case_id].append(task)
    return found


async def open_tasks(session: AsyncSession, case_id: uuid.UUID) -> list[Task]:
    return (await open_tasks_of(session, [case_id]))[case_id]


TIER_ORDER = case({"sms": 0, "call": 1, "visit": 2, "follow_up": 3}, value=col(Task.tier), else_=4)


async def of_case(session: AsyncSession, case_id: uuid.UUID) -> list[Task]:
    # tasks created by one decision share their time: then the lower tier comes first
    stmt = select(Task).where(Task.case_id == case_id).order_by(col(Task.created_at), TIER_ORDER)
    return list((await session.exec(stmt)).all())


async def visible(
    session: AsyncSession,
    *,
    status: str,
    tier: str | None,
    case_id: uuid.UUID | None,
    warning_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[tuple[Task, Case]]:
    """The tasks the caller's scope holds (row-level security decides), newest first, keyset-paginated."""
    stmt = select(Task, Case).join(Case, col(Case.id) == col(Task.case_id))
    if status == "open":
        stmt = stmt.where(col(Task.status).in_(OPEN_STATUSES))
    elif status == "done":
        stmt = stmt.where(col(Task.status).not_in(OPEN_STATUSES))
    if tier is not None:
        stmt = stmt.where(Task.tier == tier)
    if case_id is not None:
        stmt = stmt.where(Task.case_id == case_id)
    if warning_id is not None:
        stmt = stmt.where(
            col(Task.case_id).in_(select(CaseWarning.case_id).where(CaseWarning.warning_id == warning_id))
        )
    if after is not None:
        created, last_id = after
        stmt = stmt.where(
            (col(Task.created_at) < created) | ((col(Task.created_at) == created) & (col(Task.id) < last_id))
        )
    stmt = stmt.order_by(col(Task.created_at).desc(), col(Task.id).desc()).limit(limit)
    return [(t, c) for t, c in (await session.exec(stmt)).all()]


async def team_id_for(session: AsyncSession, area_code: str, *, backup: bool) -> uuid.UUID | None:
    """The area's team; for `backup`, the backup team of the area's station. Read once per transaction: a batch of
    escalations in one area asks for the same team each time."""

    async def read() -> uuid.UUID | None:
        team = await _team_for(session, area_code, backup=backup)
        return team.id if team is not None else None

    return await remembered(session, "team_id_for", (area_code, backup), read)


async def _team_for(session: AsyncSession, area_code: str, *, backup: bool) -> Team | None:
    if backup:
        station = select(Area.station).where(Area.area_code == area_code).scalar_subquery()
        stmt = select(Team).where(col(Team.backup).is_(True), Team.station == station)
    else:
        stmt = select(Team).where(Team.area_code == area_code, col(Team.backup).is_(False))
    return (await session.exec(stmt.order_by(col(Team.name)).limit(1))).first()


def add(session: AsyncSession, *tasks: Task) -> None:
    session.add_all(tasks)
