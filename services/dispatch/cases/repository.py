from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.cases.models import Case, CaseTransition, CaseWarning
from shared.db import insert_rows

TRANSITIONS = CaseTransition.__table__  # type: ignore[attr-defined]


async def subjects_cases(
    session: AsyncSession, subject_keys: set[str], *, open_since: datetime, closed_since: datetime
) -> dict[str, list[Case]]:
    """In one query, each subject's cases that a warning may join or that make it a re-warning: the open ones that
    last heard a warning since `open_since`, and those closed since `closed_since`; latest opened first. A warning
    with narrower windows than these picks its own from them (`joinable`, `rewarned`).

    They are locked, for the joining warning, in id order (as every locking read of cases is, so that two
    transactions wait for each other instead of deadlocking); the closed ones too: they are few, and nothing but a
    correction changes a closed case."""
    found: dict[str, list[Case]] = {key: [] for key in subject_keys}
    if not subject_keys:
        return found
    stmt = (
        select(Case)
        .where(
            col(Case.subject_key).in_(subject_keys),
            or_(
                and_(col(Case.state) != "closed", col(Case.last_warning_at) >= open_since),
                and_(col(Case.state) == "closed", col(Case.closed_at) >= closed_since),
            ),
        )
        .order_by(col(Case.id))
        .with_for_update()
    )
    for case in sorted((await session.exec(stmt)).all(), key=lambda c: c.opened_at, reverse=True):
        found[case.subject_key].append(case)
    return found


def joinable(cases: Sequence[Case], open_since: datetime) -> Case | None:
    """Of a subject's cases (latest opened first), the open one a warning joins: the latest that heard a warning
    since `open_since`."""
    return next((c for c in cases if c.state != "closed" and c.last_warning_at >= open_since), None)


def rewarned(cases: Sequence[Case], closed_since: datetime) -> bool:
    """Whether one of a subject's cases closed since `closed_since`."""
    return any(c.state == "closed" and c.closed_at is not None and c.closed_at >= closed_since for c in cases)


async def get(session: AsyncSession, case_id: uuid.UUID, *, lock: bool = False) -> Case | None:
    stmt = select(Case).where(Case.id == case_id)
    if lock:
        # populate_existing: a row read earlier in the transaction is refreshed with what the lock was taken on
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.exec(stmt)).first()


async def known_warnings(session: AsyncSession, warning_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Of `warning_ids`, those already part of a case, in one query."""
    if not warning_ids:
        return set()
    stmt = select(CaseWarning.warning_id).where(col(CaseWarning.warning_id).in_(warning_ids))
    return set((await session.exec(stmt)).all())


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
