"""API keys and the per-source rate limit: pure rules."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass

KEY_PREFIX = "qz_"
#: How much of a key is kept in clear to name it (in listings and when revoking it): not enough to use it.
KEY_PREFIX_LENGTH = 12


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: nobody can brute-force the preimage.
    return hashlib.sha256(key.encode()).hexdigest()


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
