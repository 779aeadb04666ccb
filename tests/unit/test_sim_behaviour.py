"""Simulated subjects: draws fixed by seed and key, in the proportions asked for."""

import pytest

from services.sim.behaviour import Behaviour, pick, uniform

PHONES = [f"139{n:08d}" for n in range(20_000)]


def test_a_draw_is_fixed_by_seed_and_key() -> None:
    assert uniform(7, "answers", "13800138000") == uniform(7, "answers", "13800138000")
    assert uniform(7, "answers", "13800138000") != uniform(8, "answers", "13800138000")
    values = [uniform(1, "x", n) for n in range(10_000)]
    assert min(values) > 0 and max(values) < 1
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.01)


def test_pick_follows_the_weights() -> None:
    mix = (("a", 1.0), ("b", 3.0))
    assert pick(0.2, mix) == "a" and pick(0.3, mix) == "b" and pick(0.999, mix) == "b"


def test_a_subject_either_answers_at_the_first_attempt_or_never() -> None:
    behaviour = Behaviour(answer_p=0.812)
    connected = 0
    for phone in PHONES:
        first = behaviour.call(1, phone, 1)
        later = [behaviour.call(1, phone, attempt).call_result == "connected" for attempt in (2, 3)]
        if first.call_result == "connected":
            connected += 1
            assert first.dissuasion_result in ("dissuaded", "not_dissuaded")
            assert all(later)
        else:
            assert first.dissuasion_result is None and not any(later)
    assert connected / len(PHONES) == pytest.approx(0.812, abs=0.01)


def test_visits_dissuade_in_the_proportion_asked_and_match_the_expected_rates() -> None:
    behaviour = Behaviour(dissuade_p=0.954)
    plans = [behaviour.visit(3, phone, 1, 900) for phone in PHONES]
    dissuaded = sum(p.dissuasion_result == "dissuaded" for p in plans) / len(plans)
    met = sum(p.dissuasion_result != "not_met" for p in plans) / len(plans)
    expected = behaviour.expected()
    assert dissuaded == pytest.approx(expected["dissuasion_rate"], abs=0.005)
    assert met == pytest.approx(expected["visit_met_rate"], abs=0.005)
    travel = sorted(p.travel_s for p in plans)
    assert travel[len(travel) // 2] == pytest.approx(900, rel=0.02)


def test_probabilities_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="answer_p"):
        Behaviour(answer_p=1.2)
