"""Periodic jobs over cases, run with `shared.runtime.every`."""

import logging

import sqlalchemy as sa

from services.dispatch.cases import repository
from services.dispatch.metrics import CASES_OPEN
from shared.db import SessionFactory, unit_of_work
from shared.scope import system_settings

log = logging.getLogger(__name__)


class OpenCasesGauge:
    """quanzu_cases_open{area,state}, recomputed from the database: right whichever replica changed a case."""

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self.seen: set[tuple[str, str]] = set()

    async def refresh(self) -> None:
        async with unit_of_work(self.factory, system_settings()) as session:
            rows = (
                await (await session.connection()).execute(
                    sa.text(
                        "SELECT coalesce(area_code, 'unassigned'), state, count(*) FROM dispatch.cases"
                        " WHERE state <> 'closed' GROUP BY 1, 2"
                    )
                )
            ).all()
        current = {(area, state): count for area, state, count in rows}
        for key in self.seen - set(current):
            CASES_OPEN.labels(*key).set(0)
        for key, count in current.items():
            CASES_OPEN.labels(*key).set(count)
        self.seen |= set(current)


async def erase_expired_subjects(factory: SessionFactory, retention_days: int) -> None:
    """Personal data is kept only as long as needed (PIPL): erase it from cases closed past the retention."""
    async with unit_of_work(factory, system_settings()) as session:
        erased = await repository.erase_subjects(session, retention_days)
    if erased:
        log.info("erased the personal data of %d cases closed over %d days ago", erased, retention_days)
