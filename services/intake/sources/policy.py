"""The per-source rate limit: pure rules."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """Refills `rate` tokens per second up to `capacity`; a record costs one token."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        return cls(rate, capacity, capacity, now)

    def take(self, cost: float, now: float) -> float | None:
        """Take `cost` tokens; None if allowed, else the seconds to wait before it would be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if cost <= self.tokens:
            self.tokens -= cost
            return None
        return (min(cost, self.capacity) - self.tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def bucket_capacity(rate: float, batch_max_records: int) -> float:
    """Room for two seconds of traffic, and always for one full batch."""
    return max(2 * rate, float(batch_max_records))
