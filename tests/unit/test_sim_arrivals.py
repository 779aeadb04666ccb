"""The arrival process: its mean rate, its daily shape, its mixes, and records intake accepts."""

import math
import random
from collections import Counter

import pytest

from services.intake.warnings.models import WarningCreate
from services.sim import arrivals
from services.sim.district import make_district
from shared.events import FRAUD_TYPES


def test_the_daily_cycle_averages_one_over_a_day() -> None:
    steps = 24 * 600
    mean = sum(arrivals.intensity(24 * i / steps) for i in range(steps)) / steps
    assert mean == pytest.approx(1.0, abs=1e-9)
    assert arrivals.intensity(3) < 0.2
    assert arrivals.intensity(20) > 1.5


def test_the_mean_rate_is_the_one_asked_for() -> None:
    times = arrivals.arrival_times(random.Random(1), per_day=100, hours=24 * 200)
    # 20,000 expected; a Poisson count's standard deviation is its square root (about 141)
    assert abs(len(times) - 20_000) < 4 * math.sqrt(20_000)


def test_warnings_follow_the_daily_cycle_hour_by_hour() -> None:
    days = 300
    times = arrivals.arrival_times(random.Random(2), per_day=240, hours=24 * days)
    by_hour = Counter(int(t // 3600) % 24 for t in times)
    for hour in range(24):
        expected = 240 / 24 * days * (arrivals.intensity(hour) + arrivals.intensity(hour + 1)) / 2
        assert abs(by_hour[hour] - expected) < 4 * math.sqrt(expected) + 1, hour
    assert by_hour[3] * 5 < by_hour[20]


def test_a_later_start_hour_shifts_the_cycle() -> None:
    night = arrivals.arrival_times(random.Random(3), per_day=1000, hours=2, start_hour=2)
    evening = arrivals.arrival_times(random.Random(3), per_day=1000, hours=2, start_hour=19)
    assert len(night) * 4 < len(evening)


def test_the_fraud_mix_covers_the_contract_types_in_the_stated_shares() -> None:
    assert {name for name, _ in arrivals.FRAUD_MIX} == set(FRAUD_TYPES)
    assert sum(share for _, share in arrivals.FRAUD_MIX) == pytest.approx(1.0)
    made = arrivals.warnings(make_district(areas=20, streets=2), seed=5, per_day=20_000, hours=24)
    counts = Counter(w.fraud_type for w in made)
    for name, share in arrivals.FRAUD_MIX:
        assert counts[name] / len(made) == pytest.approx(share, abs=0.015), name
    risks = Counter(w.risk_level for w in made)
    assert risks["critical"] / len(made) == pytest.approx(0.10, abs=0.01)


def test_every_record_is_one_intake_accepts_for_a_distinct_subject() -> None:
    district = make_district(areas=10, streets=2)
    made = arrivals.warnings(district, seed=9, per_day=2000, hours=24)
    assert len({w.phone for w in made}) == len(made)
    assert {w.area_code for w in made} <= district.codes
    for w in made:
        parsed = WarningCreate.model_validate(w.record("run1", "2026-11-21T08:15:00+08:00"))
        assert parsed.subject.id_number == w.id_number
        assert parsed.external_id == f"SIM-run1-{w.seq:07d}"
    assert [w.at_s for w in made] == sorted(w.at_s for w in made)


def test_one_seed_one_stream_of_warnings() -> None:
    district = make_district(areas=10, streets=2)
    first = arrivals.warnings(district, seed=11, per_day=500, hours=6)
    assert first == arrivals.warnings(district, seed=11, per_day=500, hours=6)
    assert first != arrivals.warnings(district, seed=12, per_day=500, hours=6)
