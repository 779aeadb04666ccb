"""Periodic jobs over cases: the quanzu_cases_open{area,state} gauge (recomputed from the database, right
whichever replica changed a case) and the erasure of personal data past its retention."""

import asyncio
import logging

import sqlalchemy as sa

from services.dispatch.cases import repository
from services.dispatch.metrics import CASES_OPEN
from shared.db import SessionFactory, unit_of_work
from shared.scope import system_settings

log = logging.getLogger(__name__)


async def refresh_open_cases(factory: SessionFactory, every_s: float = 15.0) -> None:
    seen: set[tuple[str, str]] = set()
    while True:
        try:
            async with unit_of_work(factory, system_settings()) as session:
                rows = (
                    await (await session.connection()).execute(
                        sa.text(
                            "SELECT coalesce(area_code, 'unassigned'), state, count(*) FROM dispatch.cases"
                            " WHERE state <> 'closed' GROUP BY 1, 2"
                        )
                    )
                ).all()
            current = {(area, state): count for area, state, count in rows}
            for key in seen - set(current):
                CASES_OPEN.labels(*key).set(0)
            for key, count in current.items():
                CASES_OPEN.labels(*key).set(count)
            seen |= set(current)
        except Exception as exc:
            log.warning("cannot refresh the open-cases gauge: %s", exc)
        await asyncio.sleep(every_s)


async def erase_expired_subjects(factory: SessionFactory, retention_days: int, every_s: float = 3600) -> None:
    """Personal data is kept only as long as needed (PIPL): erase it from cases closed past the retention."""
    while True:
        try:
            async with unit_of_work(factory, system_settings()) as session:
                erased = await repository.erase_subjects(session, retention_days)
            if erased:
                log.info("erased the personal data of %d cases closed over %d days ago", erased, retention_days)
        except Exception as exc:
            log.warning("retention run failed: %s", exc)
        await asyncio.sleep(every_s)
