"""What the report is made of, read from the system under test.

SLA compliance comes from dispatch's own task rows (read as the `quanzu` command reads them, in the system's
scope): their due times and when each was done — for a visit, when the team arrived, which is what the visit
deadline is about and what dispatch stops the clock on. The mobile API does not show arrival or completion times,
and feedback's `sla_compliance_visit` counts a visit done when its outcome is recorded (after the time at the
door), so it is shown beside, not used. The rates come from feedback's `GET /v1/stats/rates`, as a district admin
reads them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from services.cli import admin
from services.dispatch.cases.models import Case, CaseWarning
from services.dispatch.tasks.models import Task
from services.sim.members import MemberSession
from shared.settings import CommonSettings


@dataclass(frozen=True)
class TaskTimes:
    area_code: str
    tier: str
    status: str
    created_at: datetime
    due_at: datetime
    done_at: datetime | None  # for a visit: the arrival; otherwise when dispatch took the task as done
    case_closed_at: datetime | None


async def task_times(settings: CommonSettings, codes: set[str], since: datetime) -> list[TaskTimes]:
    stmt = (
        select(Task, Case.closed_at)
        .join(Case, col(Case.id) == col(Task.case_id))
        .where(col(Task.area_code).in_(sorted(codes)), col(Task.created_at) >= since)
    )
    async with admin.session(settings) as s:
        rows = (await s.exec(stmt)).all()
    return [
        TaskTimes(
            area_code=str(t.area_code),
            tier=t.tier,
            status=t.status,
            created_at=t.created_at,
            due_at=t.due_at,
            done_at=t.arrived_at if t.tier == "visit" else t.done_at,
            case_closed_at=closed,
        )
        for t, closed in rows
    ]


async def cases_of(settings: CommonSettings, warning_ids: list[str]) -> int:
    """How many of these warnings dispatch has made part of a case."""
    if not warning_ids:
        return 0
    ids = [uuid.UUID(w) for w in warning_ids]
    stmt = select(func.count()).select_from(CaseWarning).where(col(CaseWarning.warning_id).in_(ids))
    async with admin.session(settings) as s:
        return int((await s.exec(stmt)).one())


async def rates_by_area(admin_session: MemberSession, feedback_url: str, start: datetime, end: datetime) -> Any:
    response = await admin_session.request(
        "GET",
        f"{feedback_url}/v1/stats/rates",
        params={"from": start.isoformat(), "to": end.isoformat(), "group_by": "area"},
    )
    if response.status_code != 200:
        raise RuntimeError(f"GET /v1/stats/rates: HTTP {response.status_code}")
    return response.json()
