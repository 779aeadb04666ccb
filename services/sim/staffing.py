"""How many teams an area needs to meet its visit SLA: a deterministic replay of the visits the area actually had.

Method: replay the area's observed visit requests (when dispatch created each visit task) against `c` teams that
take them first come, first served, each going to the first team free; a visit is on time when its wait for a free
team plus its travel is within the SLA. The answer is the smallest `c` with at least `target` of the visits on
time, or None when even a free team for every visit would miss (travel alone is too long: more teams cannot help,
a nearer base or a longer SLA can).

Why a replay rather than an Erlang-C (M/M/c) formula: warnings follow a daily cycle, so an area's visits bunch up
in the evening peak; a stationary queueing formula fed the day's average rate underestimates the peak's queue, and
it knows nothing of the travel time inside the SLA. The replay uses the real bunching and the travel and on-site
times the simulated teams drew, and reproduces the observed compliance at today's team count (the report shows
both). Its limit: it answers for the day that was simulated, not for every day. (tests/unit/test_sim_staffing.py
checks it against Erlang C where the formula holds: Poisson requests, exponential service, no travel.)
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

MAX_TEAMS = 20


@dataclass(frozen=True)
class VisitJob:
    requested_s: float  # when the visit task was created
    travel_s: float
    on_site_s: float


def on_time(jobs: Sequence[VisitJob], teams: int, sla_s: float) -> int:
    """How many visits arrive within `sla_s` of their request with `teams` teams, first come first served."""
    if teams < 1:
        raise ValueError("teams must be at least 1")
    free_at = [0.0] * teams
    heapq.heapify(free_at)
    met = 0
    for job in sorted(jobs, key=lambda j: j.requested_s):
        start = max(job.requested_s, heapq.heappop(free_at))
        arrival = start + job.travel_s
        if arrival - job.requested_s <= sla_s:
            met += 1
        heapq.heappush(free_at, arrival + job.on_site_s)
    return met


def compliance(jobs: Sequence[VisitJob], teams: int, sla_s: float) -> float | None:
    return on_time(jobs, teams, sla_s) / len(jobs) if jobs else None


def teams_needed(jobs: Sequence[VisitJob], sla_s: float, target: float, *, max_teams: int = MAX_TEAMS) -> int | None:
    """The fewest teams that put at least `target` of the visits on site within the SLA; None if no number of
    teams up to `max_teams` (or one per visit) does."""
    if not jobs:
        return 1
    needed = target * len(jobs)
    for teams in range(1, min(max_teams, len(jobs)) + 1):
        if on_time(jobs, teams, sla_s) >= needed - 1e-9:
            return teams
    return None


def travel_bound(jobs: Sequence[VisitJob], sla_s: float, target: float) -> bool:
    """Whether travel alone puts more than 1 - `target` of the visits late: no number of teams would do."""
    return sum(1 for j in jobs if j.travel_s <= sla_s) < target * len(jobs) - 1e-9
