from __future__ import annotations

import asyncio
import logging

from services.intake.areas import repository
from shared.db import SessionFactory

log = logging.getLogger(__name__)


class KnownAreas:
    """The active area codes, in memory: deciding `assigned` must not cost a query per warning.

    Refreshed from intake's registry copy every `refresh_s` and at once when this process applies a change.
    """

    def __init__(self, factory: SessionFactory, refresh_s: float) -> None:
        self.factory = factory
        self.refresh_s = refresh_s
        self.codes: frozenset[str] = frozenset()

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    async def refresh(self) -> None:
        async with self.factory() as session:
            self.codes = frozenset(await repository.active_codes(session))

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("cannot refresh known areas: %s", exc)
            await asyncio.sleep(self.refresh_s)
