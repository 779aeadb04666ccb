from __future__ import annotations

import logging

from services.intake.areas import repository
from shared.db import SessionFactory

log = logging.getLogger(__name__)


class KnownAreas:
    """The active area codes, in memory: deciding `assigned` must not cost a query per warning.

    Refreshed from intake's registry copy periodically and at once when this process applies a change.
    """

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self.codes: frozenset[str] = frozenset()

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    async def refresh(self) -> None:
        async with self.factory() as session:
            self.codes = frozenset(await repository.active_codes(session))
