"""How long and how hard a fault run is: the short form `make test` runs, the full one of `make test-faults`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    mode: str  # "short" (in `make test`) or "full" (`make test-faults`)
    rate: float  # posts per second (every fifth a batch of five)
    kill_rounds: int  # how many times each service is killed
    gap_s: tuple[float, float]  # a random wait before each fault, so it lands at a random moment
    broker_pause_s: float
    postgres_down_s: float
    sms_faults_s: float
    recovery_timeout_s: float
    settle_timeout_s: float
    replay_margin_s: float  # `outbox replay --since` this long before the broker was lost


SHORT = Plan("short", 0.5, 1, (1.0, 3.0), 5, 5, 10, 180, 240, 30)
FULL = Plan("full", 1.0, 2, (5.0, 15.0), 30, 20, 60, 300, 420, 120)
#: The faults by key, in the order they are injected; QUANZU_FAULTS_ONLY=kill,poison picks some (to debug one).
FAULT_KEYS = ("kill", "pause", "lose", "postgres", "sms", "redeliver", "poison")


def plan_from_env() -> Plan:
    """QUANZU_FAULTS=full for the full run (anything else: the short one); QUANZU_FAULTS_RATE=<posts/s> lowers the
    load on a busy machine."""
    plan = FULL if os.environ.get("QUANZU_FAULTS") == "full" else SHORT
    rate = os.environ.get("QUANZU_FAULTS_RATE")
    return dataclasses.replace(plan, rate=float(rate)) if rate else plan


def faults_from_env() -> tuple[str, ...]:
    wanted = [k.strip() for k in os.environ.get("QUANZU_FAULTS_ONLY", "").split(",") if k.strip()]
    unknown = set(wanted) - set(FAULT_KEYS)
    if unknown:
        raise ValueError(f"QUANZU_FAULTS_ONLY: unknown fault(s) {sorted(unknown)}; known: {', '.join(FAULT_KEYS)}")
    return tuple(k for k in FAULT_KEYS if not wanted or k in wanted)
