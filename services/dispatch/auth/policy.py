"""Brute-force protection and refresh-token rules. Pure."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ThrottleRule:
    max_failures: int
    window: timedelta
    lockout: timedelta


USERNAME_RULE = ThrottleRule(max_failures=5, window=timedelta(minutes=15), lockout=timedelta(minutes=15))
ADDRESS_RULE = ThrottleRule(max_failures=30, window=timedelta(minutes=15), lockout=timedelta(minutes=15))


@dataclass(frozen=True)
class ThrottleState:
    failures: int
    window_started_at: datetime
    locked_until: datetime | None


def locked_for(state: ThrottleState | None, now: datetime) -> float | None:
    """Seconds until login may be tried again, or None if it may be tried now."""
    if state is None or state.locked_until is None or state.locked_until <= now:
        return None
    return (state.locked_until - now).total_seconds()


def after_failure(state: ThrottleState | None, rule: ThrottleRule, now: datetime) -> ThrottleState:
    if state is None or now - state.window_started_at > rule.window:
        state = ThrottleState(0, now, None)
    failures = state.failures + 1
    locked = now + rule.lockout if failures >= rule.max_failures else state.locked_until
    return ThrottleState(failures, state.window_started_at, locked)


def new_refresh_token() -> str:
    return "qzr_" + secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
