"""What the n-th warning of a fault run is, and what the responders answer for each of its tasks. Pure.

Every draw is keyed by (seed, n, what is drawn), never by time or by an id the system assigns, so a run with
faults and a run without make the same warnings and get the same answers: their outcome-based rates must agree
exactly, and any difference is work that was lost or done twice.

The warnings are never critical nor in progress, and no area upgrades them to a visit at once: a call and a
visit open side by side would race (a visit met first cancels the call), and the rates would then depend on who
answered first rather than on what was answered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from shared.events import FRAUD_TYPES

T = TypeVar("T")

RISKS: tuple[tuple[str, float], ...] = (("low", 0.2), ("medium", 0.35), ("high", 0.45))
RESIDENCIES: tuple[tuple[str, float], ...] = (("resident", 0.5), ("worker", 0.2), ("transit", 0.1), ("unknown", 0.2))
CALL_RESULTS: tuple[tuple[str, float], ...] = (
    ("connected", 0.5),
    ("no_answer", 0.25),
    ("busy", 0.06),
    ("powered_off", 0.1),
    ("invalid_number", 0.03),
    ("rejected", 0.06),
)
PHONE_DISSUASION: tuple[tuple[str, float], ...] = (
    ("dissuaded", 0.6),
    ("not_dissuaded", 0.25),
    ("already_defrauded", 0.05),
    ("false_positive", 0.1),
)
VISIT_RESULTS: tuple[tuple[str, float], ...] = (
    ("dissuaded", 0.7),
    ("not_dissuaded", 0.1),
    ("not_met", 0.12),
    ("already_defrauded", 0.04),
    ("false_positive", 0.04),
)
#: Share of tasks a responder leaves alone past their acknowledgement (or arrival) deadline, so deadlines fire.
LATE_SHARE = 0.2


def unit(*parts: object) -> float:
    """A number in [0, 1) that depends only on `parts`."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(weighted: Sequence[tuple[T, float]], u: float) -> T:
    """The choice whose cumulative weight first exceeds `u` (weights summing to 1)."""
    total = 0.0
    for value, weight in weighted:
        total += weight
        if u < total:
            return value
    return weighted[-1][0]


def phone(phase: int, n: int) -> str:
    """A distinct mobile number per phase and warning: no subject is warned twice (no joins, no re-warnings)."""
    if not 0 <= phase <= 9 or not 0 <= n < 1_000_000:
        raise ValueError("phase is one digit and n at most six")
    return f"1380{phase}{n:06d}"


@dataclass(frozen=True)
class WarningPlan:
    n: int
    risk: str
    fraud_type: str
    area_code: str
    residency: str


def warning_plan(seed: int, n: int, areas: Sequence[str]) -> WarningPlan:
    return WarningPlan(
        n=n,
        risk=pick(RISKS, unit(seed, n, "risk")),
        fraud_type=FRAUD_TYPES[int(unit(seed, n, "fraud_type") * len(FRAUD_TYPES))],
        area_code=areas[int(unit(seed, n, "area") * len(areas))],
        residency=pick(RESIDENCIES, unit(seed, n, "residency")),
    )


def warning_record(plan: WarningPlan, *, run: str, phase: int, issued_at: datetime) -> dict[str, Any]:
    """The record intake is sent (the same bytes on every retry: `external_id` is the idempotency key)."""
    return {
        "external_id": f"FAULTS-{run}-{phase}-{plan.n:06d}",
        "issued_at": issued_at.isoformat(),
        "subject": {"phone": phone(phase, plan.n), "name": "测试对象", "residency": plan.residency},
        "area_code": plan.area_code,
        "fraud_type": plan.fraud_type,
        "risk_level": plan.risk,
        "in_progress": False,
        "amount_at_risk": 10_000.0 + plan.n,
        "evidence": {"suspect_numbers": [], "accounts": [], "urls": [], "apps": []},
    }


@dataclass(frozen=True)
class CallAnswer:
    call_result: str
    dissuasion_result: str | None


def call_answer(seed: int, n: int, attempt: int) -> CallAnswer:
    result = pick(CALL_RESULTS, unit(seed, n, "call", attempt))
    dissuasion = pick(PHONE_DISSUASION, unit(seed, n, "call-dissuasion", attempt)) if result == "connected" else None
    return CallAnswer(result, dissuasion)


@dataclass(frozen=True)
class VisitAnswer:
    dissuasion_result: str
    app_installed: bool


def visit_answer(seed: int, n: int, visit: int) -> VisitAnswer:
    """The `visit`-th visit (0, 1, ...) of the n-th warning's case."""
    return VisitAnswer(
        pick(VISIT_RESULTS, unit(seed, n, "visit", visit)),
        unit(seed, n, "visit-app", visit) < 0.6,
    )


def late(seed: int, n: int, tier: str, attempt: int) -> bool:
    """Whether the responder lets this task's acknowledgement (and a visit's arrival) deadline pass first."""
    return unit(seed, n, "late", tier, attempt) < LATE_SHARE
