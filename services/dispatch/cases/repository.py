from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.cases.models import Case, CaseTransition, CaseWarning
from shared.db import insert_rows

TRANSITIONS = CaseTransition.__table__  # type: ignore[attr-defined]


async def subject_cases(
    session: AsyncSession, subject_key: str, *, open_since: datetime, closed_since: datetime
) -> tuple[Case | None, bool]:
    """In one query: the subject's open case that last heard a warning since `open_since`, locked for the joining
    warning (the latest opened, if several); and whether a case of the subject closed since `closed_since`.

    The recently closed cases are locked too: they are few, and nothing but a correction changes a closed case."""
    stmt = (
        select(Case)
        .where(
            Case.subject_key == subject_key,
            or_(
                and_(col(Case.state) != "closed", col(Case.last_warning_at) >= open_since),
                and_(col(Case.state) == "closed", col(Case.closed_at) >= closed_since),
            ),
        )
        .order_by(col(Case.opened_at).desc())
        .with_for_update()
    )
    found = (await session.exec(stmt)).all()
    open_case = next((c for c in found if c.state != "closed"), None)
    return open_case, any(c.state == "closed" for c in found)


async def get(session: AsyncSession, case_id: uuid.UUID, *, lock: bool = False) -> Case | None:
    stmt = select(Case).where(Case.id == case_id)
    if lock:
        # populate_existing: a row read earlier in the transaction is refreshed with what the lock was taken on
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.exec(stmt)).first()


async def warning_known(session: AsyncSession, warning_id: uuid.UUID) -> bool:
    return await session.get(CaseWarning, warning_id) is not None


async def warning_ids(session: AsyncSession, case_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    if not case_ids:
        return {}
    rows = await session.exec(
        select(CaseWarning.case_id, CaseWarning.warning_id)
        .where(col(CaseWarning.case_id).in_(case_ids))
        .order_by(col(CaseWarning.received_at))
    )
    out: dict[uuid.UUID, list[uuid.UUID]] = {}
    for case_id, warning_id in rows.all():
        out.setdefault(case_id, []).append(warning_id)
    return out


async def transitions(session: AsyncSession, case_id: uuid.UUID) -> list[CaseTransition]:
    stmt = select(CaseTransition).where(CaseTransition.case_id == case_id).order_by(col(CaseTransition.at))
    return list((await session.exec(stmt)).all())


async def warnings_of(session: AsyncSession, case_id: uuid.UUID) -> list[CaseWarning]:
    stmt = select(CaseWarning).where(CaseWarning.case_id == case_id).order_by(col(CaseWarning.received_at))
    return list((await session.exec(stmt)).all())


def add(session: AsyncSession, *rows: Case | CaseWarning) -> None:
    session.add_all(rows)


async def add_transition(
    session: AsyncSession, case_id: uuid.UUID, at: datetime, from_state: str, to_state: str, actor: str, reason: str
) -> None:
    """A case's timeline is only ever appended to: a plain row, not an ORM object."""
    row = {"id": uuid.uuid4(), "case_id": case_id, "at": at, "from_state": from_state, "to_state": to_state,
           "actor": actor, "reason": reason}  # fmt: skip
    await insert_rows(session, TRANSITIONS, [row])


async def erase_subjects(session: AsyncSession, closed_days_ago: int) -> int:
    """Erase the personal fields of cases closed more than `closed_days_ago` days ago; what the rates need
    (area, risk, fraud type, residency, times, closure) stays."""
    conn = await session.connection()
    result = await conn.execute(
        text(
            """UPDATE dispatch.cases
               SET subject = jsonb_build_object('residency', subject->'residency', 'erased', true), subject_key = ''
               WHERE state = 'closed' AND closed_at < now() - make_interval(days => :days)
                 AND NOT subject ? 'erased'"""
        ),
        {"days": closed_days_ago},
    )
    return int(result.rowcount or 0)
