"""The staffing replay on cases whose answer is known: by hand, and Erlang C where its assumptions hold."""

import math
import random

import pytest

from services.sim.staffing import VisitJob, compliance, on_time, teams_needed, travel_bound

MIN = 60.0


def test_visits_at_once_queue_for_the_teams_there_are() -> None:
    # four visits at once, 10 minutes away, 50 minutes at the door: a team is back on the road after an hour
    jobs = [VisitJob(0, 10 * MIN, 50 * MIN) for _ in range(4)]
    assert on_time(jobs, 1, 60 * MIN) == 1  # the next ones arrive at 70, 130, 190 minutes
    assert on_time(jobs, 2, 60 * MIN) == 2
    assert on_time(jobs, 4, 60 * MIN) == 4
    assert teams_needed(jobs, 60 * MIN, 0.9) == 4
    assert teams_needed(jobs, 60 * MIN, 0.5) == 2
    assert compliance(jobs, 3, 60 * MIN) == pytest.approx(0.75)


def test_spread_out_visits_need_one_team() -> None:
    jobs = [VisitJob(h * 3600, 20 * MIN, 30 * MIN) for h in range(10)]
    assert teams_needed(jobs, 60 * MIN, 0.9) == 1


def test_no_number_of_teams_beats_a_drive_longer_than_the_sla() -> None:
    jobs = [VisitJob(h * 3600, 70 * MIN, 30 * MIN) for h in range(5)]
    assert teams_needed(jobs, 60 * MIN, 0.9) is None
    assert travel_bound(jobs, 60 * MIN, 0.9)
    assert not travel_bound([VisitJob(0, 10 * MIN, 0)], 60 * MIN, 0.9)


def test_the_answer_is_the_fewest_teams() -> None:
    rng = random.Random(4)
    jobs = [VisitJob(rng.uniform(0, 8 * 3600), rng.uniform(5, 40) * MIN, rng.uniform(10, 60) * MIN) for _ in range(60)]
    needed = teams_needed(jobs, 60 * MIN, 0.9)
    assert needed is not None and needed > 1
    assert on_time(jobs, needed, 60 * MIN) >= 0.9 * len(jobs)
    assert on_time(jobs, needed - 1, 60 * MIN) < 0.9 * len(jobs)


def _erlang_c(teams: int, load: float) -> float:
    """The probability an arrival waits in an M/M/c queue with offered load `load` (Erlangs)."""
    top = load**teams / math.factorial(teams) * teams / (teams - load)
    return top / (sum(load**k / math.factorial(k) for k in range(teams)) + top)


@pytest.mark.parametrize(("teams", "rate_per_h", "wait_h"), [(1, 0.5, 0.5), (2, 1.5, 0.25), (3, 2.4, 0.2)])
def test_with_poisson_requests_and_exponential_visits_the_replay_agrees_with_erlang_c(
    teams: int, rate_per_h: float, wait_h: float
) -> None:
    rng = random.Random(teams)
    t, jobs = 0.0, []
    for _ in range(100_000):
        t += rng.expovariate(rate_per_h / 3600)
        jobs.append(VisitJob(t, 0.0, rng.expovariate(1 / 3600)))  # no travel: the SLA is the wait alone
    mu = 1.0  # visits per hour per team
    expected = 1 - _erlang_c(teams, rate_per_h / mu) * math.exp(-(teams * mu - rate_per_h) * wait_h)
    assert compliance(jobs, teams, wait_h * 3600) == pytest.approx(expected, abs=0.015)
