"""A warning joins its subject's open case; once that case is closed, the subject's next warning opens a new case
marked as re-warned (the rates count such cases apart); and a poll's warnings handled together have the effect of
handling them one by one. Run on dispatch's flow directly, in a private database with the demo district
(`test_deadline_batches.engine`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dispatch.cases import repository as cases
from services.dispatch.cases import service
from shared.db import SessionFactory, make_session_factory, unit_of_work, write_behind
from shared.events import WarningReceivedV1
from shared.scope import system_settings
from tests.integration.test_deadline_batches import AREA, NOTIFIER, Statements, _warning, engine, what_happened

__all__ = ["engine"]  # the fixture, shared with test_deadline_batches


async def warn(factory: SessionFactory, warning: WarningReceivedV1, now: datetime) -> tuple[str, bool, int]:
    """Hand the warning to the flow as its consumer does; the case it is part of: (id, rewarned, its warnings)."""
    async with unit_of_work(factory, system_settings()) as session, write_behind(session):
        await service.on_warning(session, warning, NOTIFIER, now)
    async with unit_of_work(factory, system_settings()) as session:
        conn = await session.connection()
        row = (
            await conn.execute(
                sa.text(
                    "SELECT c.id, c.rewarned, (SELECT count(*) FROM dispatch.case_warnings w WHERE w.case_id = c.id)"
                    " FROM dispatch.cases c JOIN dispatch.case_warnings cw ON cw.case_id = c.id"
                    " WHERE cw.warning_id = :w"
                ),
                {"w": warning.warning_id},
            )
        ).one()
    return str(row[0]), bool(row[1]), int(row[2])


async def test_a_warning_joins_the_open_case_and_after_its_closing_opens_a_rewarned_one(engine: AsyncEngine) -> None:
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    first = _warning(AREA, now)
    same_subject = [_warning(AREA, now).model_copy(update={"subject_key": first.subject_key}) for _ in range(2)]

    opened, rewarned, _ = await warn(factory, first, now)
    assert not rewarned
    joined, _, warnings = await warn(factory, same_subject[0], now + timedelta(minutes=1))
    assert (joined, warnings) == (opened, 2)

    async with unit_of_work(factory, system_settings()) as session:
        case = await cases.get(session, uuid.UUID(opened), lock=True)
        assert case is not None
        await service.close(session, case, "dissuaded", now + timedelta(minutes=2), actor="test", reason="met")

    again, rewarned, warnings = await warn(factory, same_subject[1], now + timedelta(minutes=3))
    assert again != opened and rewarned and warnings == 1
    other, rewarned, _ = await warn(factory, _warning(AREA, now), now + timedelta(minutes=3))
    assert other not in (opened, again) and not rewarned


def scenario(now: datetime) -> tuple[list[WarningReceivedV1], list[WarningReceivedV1]]:
    """What came before (handled one by one), and a poll's warnings that meet every way a warning is taken: a new
    case, its subject again in the same poll at a raised risk (joins it), a warning with no known area (the
    unassigned queue), the same warning twice, a replay of an earlier one, a subject whose case was closed (a
    re-warning) and one whose case is still open (joins it)."""
    closed, still_open = _warning(AREA, now), _warning(AREA, now)
    first = _warning(AREA, now)
    again = _warning(AREA, now).model_copy(update={"subject_key": first.subject_key, "risk_level": "critical"})
    unassigned = _warning(None, now)
    rewarning = _warning(AREA, now).model_copy(update={"subject_key": closed.subject_key})
    joining = _warning(AREA, now).model_copy(update={"subject_key": still_open.subject_key, "risk_level": "medium"})
    return [closed, still_open], [first, again, unassigned, first, still_open, rewarning, joining]


async def case_of(factory: SessionFactory, warning: WarningReceivedV1) -> uuid.UUID:
    async with unit_of_work(factory, system_settings()) as session:
        conn = await session.connection()
        query = sa.text("SELECT case_id FROM dispatch.case_warnings WHERE warning_id = :w")
        return uuid.UUID(str((await conn.execute(query, {"w": warning.warning_id})).scalar_one()))


async def test_warnings_handled_together_have_the_effect_of_handling_them_one_by_one(engine: AsyncEngine) -> None:
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    twins = [scenario(now), scenario(now)]
    for before, _ in twins:
        for warning in before:
            await warn(factory, warning, now - timedelta(minutes=10))
        async with unit_of_work(factory, system_settings()) as session:
            case = await cases.get(session, await case_of(factory, before[0]), lock=True)
            assert case is not None
            await service.close(session, case, "dissuaded", now - timedelta(minutes=5), actor="test", reason="met")
    (_, together), (_, alone) = twins
    statements = Statements(engine)

    async with unit_of_work(factory, system_settings()) as session, write_behind(session):
        await service.on_warnings(session, together, NOTIFIER, now)
    batched = statements.count
    for warning in alone:
        async with unit_of_work(factory, system_settings()) as session, write_behind(session):
            await service.on_warning(session, warning, NOTIFIER, now)
    one_by_one = statements.count - batched

    got = [await what_happened(factory, await case_of(factory, w)) for w in together]
    want = [await what_happened(factory, await case_of(factory, w)) for w in alone]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, i
    opened = {await case_of(factory, w) for w in together}
    assert len(opened) == 4  # first's (with again, and first twice), unassigned's, still_open's, the re-warning's
    assert got[1]["case"][0][1] == "critical"  # the raised risk reached the case opened in the same poll
    assert got[2]["case"][0][2] is None
    for twin in (together, alone):
        async with unit_of_work(factory, system_settings()) as session:
            marked = [await cases.get(session, await case_of(factory, w)) for w in twin]
        assert [c.rewarned if c else None for c in marked] == [False, False, False, False, False, True, False]
    assert batched * 2 < one_by_one, (batched, one_by_one)
