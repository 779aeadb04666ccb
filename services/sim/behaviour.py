"""How simulated subjects and responders behave: pure draws keyed by (seed, subject, attempt), never by timing, so
the same seed gives the same outcomes however fast or slow the system under test is.

Model (the probabilities are options; the rest are stated assumptions):
- `answer_p` is per subject: a subject either takes the operator's call at the first attempt, or cannot be reached
  by phone at all (each attempt then ends no_answer, powered_off, rejected, busy or invalid_number). So the
  contract's call_connected_rate (cases with a connected call / cases with a call) estimates `answer_p` directly,
  as the documents' 81.2% 电话拨通率 is such a per-case figure.
- A connected call dissuades with `phone_dissuade_p`; otherwise the subject is not dissuaded and dispatch sends a visit.
- A visit ends `dissuaded` with `dissuade_p`; the rest split between not_met, not_dissuaded and already_defrauded.
  No false positives, so the contract's dissuasion_rate (dissuaded / judged visits) estimates `dissuade_p`.
- Travel to the door is log-normal around the area's median; time at the door log-normal around `on_site_median_s`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

NOT_REACHED: tuple[tuple[str, float], ...] = (
    ("no_answer", 0.55),
    ("powered_off", 0.2),
    ("rejected", 0.1),
    ("busy", 0.1),
    ("invalid_number", 0.05),
)
NOT_DISSUADED_AT_VISIT: tuple[tuple[str, float], ...] = (
    ("not_met", 0.4),
    ("not_dissuaded", 0.4),
    ("already_defrauded", 0.2),
)
TRAVEL_SIGMA = 0.35
ON_SITE_SIGMA = 0.3
_NORMAL = NormalDist()


def uniform(seed: int, *key: object) -> float:
    """A number in (0, 1) fixed by the seed and the key: the same question always gets the same answer."""
    digest = hashlib.sha256(repr((seed, *key)).encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / 2**64


def pick(u: float, weighted: Sequence[tuple[str, float]]) -> str:
    """The choice whose cumulative weight first exceeds `u` (weights need not sum to 1)."""
    total = sum(w for _, w in weighted)
    running = 0.0
    for name, weight in weighted:
        running += weight / total
        if u < running:
            return name
    return weighted[-1][0]


def lognormal(u: float, median: float, sigma: float) -> float:
    return median * math.exp(sigma * _NORMAL.inv_cdf(u))


@dataclass(frozen=True)
class CallOutcome:
    call_result: str
    dissuasion_result: str | None
    duration_s: float


@dataclass(frozen=True)
class VisitPlan:
    travel_s: float
    on_site_s: float
    dissuasion_result: str
    app_installed: bool


@dataclass(frozen=True)
class Behaviour:
    answer_p: float = 0.812
    dissuade_p: float = 0.954
    phone_dissuade_p: float = 0.6
    app_install_p: float = 0.8
    talk_s: tuple[float, float] = (180.0, 600.0)  # a connected call, uniform
    ring_s: float = 60.0  # an attempt nobody answers
    on_site_median_s: float = 1500.0
    travel_scale: float = 1.0  # multiplies every area's travel times (tests make teams quick)
    follow_up_delay_s: tuple[float, float] = (1800.0, 6 * 3600.0)  # the grid worker's reminder, uniform

    def __post_init__(self) -> None:
        for name in ("answer_p", "dissuade_p", "phone_dissuade_p", "app_install_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")

    def call(self, seed: int, phone: str, attempt: int) -> CallOutcome:
        answers = uniform(seed, "answers", phone) < self.answer_p
        if answers:
            dissuaded = uniform(seed, "phone-dissuaded", phone) < self.phone_dissuade_p
            low, high = self.talk_s
            talk = low + (high - low) * uniform(seed, "talk", phone, attempt)
            return CallOutcome("connected", "dissuaded" if dissuaded else "not_dissuaded", talk)
        return CallOutcome(pick(uniform(seed, "not-reached", phone, attempt), NOT_REACHED), None, self.ring_s)

    def visit(self, seed: int, phone: str, visit_no: int, travel_median_s: float) -> VisitPlan:
        travel = lognormal(uniform(seed, "travel", phone, visit_no), travel_median_s * self.travel_scale, TRAVEL_SIGMA)
        on_site = lognormal(uniform(seed, "on-site", phone, visit_no), self.on_site_median_s, ON_SITE_SIGMA)
        if uniform(seed, "dissuaded", phone, visit_no) < self.dissuade_p:
            result = "dissuaded"
        else:
            result = pick(uniform(seed, "why-not", phone, visit_no), NOT_DISSUADED_AT_VISIT)
        installed = uniform(seed, "app", phone, visit_no) < self.app_install_p
        return VisitPlan(travel, on_site, result, installed)

    def follow_up_delay(self, seed: int, key: str) -> float:
        low, high = self.follow_up_delay_s
        return low + (high - low) * uniform(seed, "follow-up", key)

    def expected(self) -> dict[str, float]:
        """What the contract's rates should come to under this behaviour, for the report to set beside them."""
        not_met_share = dict(NOT_DISSUADED_AT_VISIT)["not_met"] / sum(w for _, w in NOT_DISSUADED_AT_VISIT)
        return {
            "call_connected_rate": self.answer_p,
            "dissuasion_rate": self.dissuade_p,
            "visit_met_rate": 1 - not_met_share * (1 - self.dissuade_p),
            "antifraud_app_install_rate": self.app_install_p,
        }
