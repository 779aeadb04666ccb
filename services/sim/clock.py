"""The accelerated clock: `speed` simulated seconds pass in one real second, from the moment the clock starts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


class SimClock:
    def __init__(self, speed: float, start_hour: float = 0.0) -> None:
        self.speed = speed
        self.start_hour = start_hour  # the simulated time of day at the start
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()

    def restart(self) -> None:
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()

    def now_s(self) -> float:
        """Simulated seconds since the start."""
        return (time.monotonic() - self._t0) * self.speed

    def at(self, when: datetime) -> float:
        """Simulated seconds since the start at the real instant `when` (e.g. a task's created_at)."""
        return (when - self.started_at).total_seconds() * self.speed

    def hour_of(self, when: datetime) -> float:
        """Simulated hours since the start at `when`, counted from the simulated midnight (start_hour + …)."""
        return self.start_hour + self.at(when) / 3600

    async def sleep(self, sim_s: float) -> None:
        """Spend `sim_s` simulated seconds (a drive, a call): the simulated people's work, not a wait for the system."""
        await asyncio.sleep(max(sim_s, 0.0) / self.speed)
