"""A warning joins its subject's open case; once that case is closed, the subject's next warning opens a new case
marked as re-warned (the rates count such cases apart). Run on dispatch's flow directly, in a private database
with the demo district (`test_deadline_batches.engine`)."""

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
from tests.integration.test_deadline_batches import AREA, NOTIFIER, _warning, engine

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
