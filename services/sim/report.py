"""The simulator's report: SLA compliance per tier and area, feedback's rates beside the input probabilities, the
areas that missed their visit SLA and the teams that would have met it. Pure: figures in, markdown out.

A task counts toward its tier's compliance once its deadline has passed or it was done: met when done by the
deadline (a visit: the team arrived by it), missed otherwise. A task the case's closure cancelled before its
deadline was never due and does not count (as in contract §5's sla_compliance).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.sim.observe import TaskTimes

TIERS = ("sms", "call", "visit", "follow_up")
RATES_SHOWN = (
    "call_connected_rate",
    "call_attempt_connected_rate",
    "visit_met_rate",
    "dissuasion_rate",
    "antifraud_app_install_rate",
    "overall_dissuasion_rate",
)


@dataclass
class Tally:
    met: int = 0
    due: int = 0

    @property
    def rate(self) -> float | None:
        return self.met / self.due if self.due else None

    def add(self, met: bool) -> None:
        self.due += 1
        self.met += met


def judged(task: TaskTimes, end: datetime) -> bool | None:
    """True: done by its deadline; False: missed it; None: not (yet) due, or cancelled before it fell due."""
    if task.done_at is not None and task.done_at <= task.due_at:
        return True
    if task.done_at is None and task.status == "cancelled":
        closed = task.case_closed_at
        if closed is None or closed <= task.due_at:
            return None
    if task.done_at is None and task.due_at > end:
        return None
    return False


def compliance(tasks: Iterable[TaskTimes], end: datetime) -> dict[tuple[str, str], Tally]:
    """Per (area, tier)."""
    found: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for task in tasks:
        verdict = judged(task, end)
        if verdict is not None:
            found[(task.area_code, task.tier)].add(verdict)
    return dict(found)


def per_tier(per_area: Mapping[tuple[str, str], Tally]) -> dict[str, Tally]:
    found = {tier: Tally() for tier in TIERS}
    for (_, tier), tally in per_area.items():
        found[tier].met += tally.met
        found[tier].due += tally.due
    return found


def hourly(
    tasks: Iterable[TaskTimes], end: datetime, hour_of: Callable[[datetime], float]
) -> dict[str, dict[int, Tally]]:
    """Compliance per tier by the simulated hour in which each task arose."""
    found: dict[str, dict[int, Tally]] = {tier: defaultdict(Tally) for tier in TIERS}
    for task in tasks:
        verdict = judged(task, end)
        if verdict is not None and task.tier in found:
            found[task.tier][int(hour_of(task.created_at) // 1)].add(verdict)
    return {tier: dict(hours) for tier, hours in found.items()}


def feedback_counts(rates: Mapping[str, Any], codes: set[str]) -> dict[str, tuple[int, int]]:
    """Feedback's numerators and denominators, summed over the simulated district's areas."""
    summed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for group in rates.get("groups", []):
        if group["key"].get("area") not in codes:
            continue
        for name, counts in group["counts"].items():
            summed[name][0] += int(counts["numerator"])
            summed[name][1] += int(counts["denominator"])
    return {name: (n, d) for name, (n, d) in summed.items()}


@dataclass(frozen=True)
class Staffing:
    area_code: str
    area_name: str
    visits: int
    on_time: int
    teams: int
    replayed: float | None  # the replay's compliance at today's team count (a check of the replay)
    needed: int | None
    travel_bound: bool


@dataclass
class Report:
    settings: list[tuple[str, str]]
    posted: int
    accepted: int
    cases: int
    tiers: dict[str, Tally]
    areas: dict[tuple[str, str], Tally]
    area_names: dict[str, str]
    feedback: dict[str, tuple[int, int]]
    responders: dict[str, tuple[int, int]]
    expected: dict[str, float]
    staffing: list[Staffing]
    sla_target: float
    visit_sla_min: float
    wall_s: float
    notes: list[str] = field(default_factory=list)
    chart: str | None = None

    @property
    def areas_with_visits(self) -> int:
        return sum(1 for (_, tier), t in self.areas.items() if tier == "visit" and t.due)

    def markdown(self, *, every_area: bool = True) -> str:
        lines = ["# Quanzu district simulation", ""]
        lines += [f"- {name}: {value}" for name, value in self.settings]
        lines += [
            f"- warnings posted: {self.posted:,}; accepted: {self.accepted:,}; in a case at dispatch: {self.cases:,}",
            f"- wall time of the simulated day and its drain: {self.wall_s / 60:.1f} min",
            "",
            "## SLA compliance per tier",
            "",
            "Deadlines of the simulated district's tasks, from dispatch's task rows (a visit is on time when the team "
            "arrived by its deadline); feedback's `sla_compliance_*` beside it counts a visit when its outcome was "
            "recorded.",
            "",
            "| tier | tasks due | on time | compliance | feedback's sla_compliance |",
            "|---|---:|---:|---:|---:|",
        ]
        for tier in TIERS:
            t = self.tiers[tier]
            fb = self.feedback.get(f"sla_compliance_{tier}", (0, 0))
            lines.append(f"| {tier} | {t.due:,} | {t.met:,} | {_pct(t.rate)} | {_pct_of(fb)} ({fb[0]:,}/{fb[1]:,}) |")
        lines += [
            "",
            "## Rates (feedback `GET /v1/stats/rates`) beside the simulation's inputs",
            "",
            "| rate | feedback | numerator/denominator | recorded by the simulated responders | input / expected |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in RATES_SHOWN:
            fb = self.feedback.get(name, (0, 0))
            ours = self.responders.get(name)
            mine = f"{_pct_of(ours)} ({ours[0]:,}/{ours[1]:,})" if ours else "—"
            expected = self.expected.get(name)
            lines.append(f"| {name} | {_pct_of(fb)} | {fb[0]:,}/{fb[1]:,} | {mine} | {_pct(expected)} |")
        lines += self._staffing_lines()
        if self.notes:
            lines += ["", "## Notes", "", *(f"- {n}" for n in self.notes)]
        if self.chart:
            lines += ["", f"![SLA compliance over simulated time]({self.chart})"]
        if every_area:
            lines += self._area_lines()
        return "\n".join(lines) + "\n"

    def _staffing_lines(self) -> list[str]:
        lines = [
            "",
            f"## Areas that missed the visit SLA (target: {self.sla_target:.0%} of visits on site within "
            f"{self.visit_sla_min:g} min)",
            "",
        ]
        missed = len(self.staffing)
        lines.append(
            f"{self.areas_with_visits - missed} of {self.areas_with_visits} areas with visits met the target; "
            f"{missed} missed it. Teams needed: the fewest teams with which a replay of the area's own visit "
            "requests, travel and time at the door (first come, first served) meets the target."
        )
        if not self.staffing:
            return lines
        lines += [
            "",
            "| area | name | visits | on time | compliance | teams | replay at that count | teams needed |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for s in sorted(self.staffing, key=lambda s: (s.on_time / s.visits if s.visits else 1, s.area_code)):
            if s.travel_bound:
                needed = "none would do: travel alone is too long"
            elif s.needed is None:
                needed = "more than 20"
            elif s.needed <= s.teams:
                needed = f"{s.needed}: enough teams, late for other reasons (the system's delays)"
            else:
                needed = f"{s.needed} (+{s.needed - s.teams})"
            lines.append(
                f"| {s.area_code} | {s.area_name} | {s.visits} | {s.on_time} | {_pct(s.on_time / s.visits)} | "
                f"{s.teams} | {_pct(s.replayed)} | {needed} |"
            )
        return lines

    def _area_lines(self) -> list[str]:
        lines = ["", "## Every area", "", "| area | name | " + " | ".join(TIERS) + " |", "|---|---|" + "---:|" * 4]
        for code in sorted(self.area_names):
            cells = []
            for tier in TIERS:
                t = self.areas.get((code, tier))
                cells.append(f"{_pct(t.rate)} ({t.met}/{t.due})" if t and t.due else "—")
            lines.append(f"| {code} | {self.area_names[code]} | " + " | ".join(cells) + " |")
        return lines


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _pct_of(counts: tuple[int, int]) -> str:
    return _pct(counts[0] / counts[1] if counts[1] else None)
