"""Scaling the contract's policy to an accelerated clock, and refusing speeds it cannot take."""

import pytest

from services.dispatch.policies.policy import PolicyFile, PolicyValues
from services.sim.policy import SpeedError, durations, scale_policy


def test_at_speed_60_one_hour_becomes_one_minute() -> None:
    policy = scale_policy(60)
    assert policy["visit_arrive_within_s"] == 60
    assert policy["ack_within_s"] == 2
    assert policy["sms_within_s"] == 1
    assert policy["call_first_within_s"] == {"medium": 30, "high": 5, "critical": 0}
    assert policy["call_retry_interval_s"] == 5
    assert policy["follow_up_within_s"] == 1440
    assert policy["visit_for_residency"] == [] and policy["call_attempts"] == 3
    PolicyFile.model_validate(policy)


def test_at_speed_1_the_policy_is_the_contracts() -> None:
    assert scale_policy(1) == PolicyValues().model_dump(mode="json")


def test_every_duration_is_scaled() -> None:
    original = durations(PolicyValues())
    scaled = durations(PolicyValues.model_validate(scale_policy(40)))
    assert set(scaled) == set(original)
    for name, seconds in original.items():
        assert scaled[name] == int(seconds / 40 + 0.5), name


def test_a_speed_that_rounds_a_duration_to_zero_is_refused_naming_it() -> None:
    with pytest.raises(SpeedError, match=r"sms_within_s \(60 s\) would become 0 s"):
        scale_policy(121)


def test_a_speed_that_makes_distinct_durations_equal_is_refused_naming_both() -> None:
    with pytest.raises(SpeedError, match=r"sms_within_s .* and ack_within_s .* would both become 1 s"):
        scale_policy(100)


def test_a_speed_below_one_is_refused() -> None:
    with pytest.raises(SpeedError, match="at least 1"):
        scale_policy(0.5)


def test_another_policy_scales_the_same_way() -> None:
    rural = PolicyValues(visit_arrive_within_s=7200, visit_for_residency=["resident"])
    policy = scale_policy(60, rural)
    assert policy["visit_arrive_within_s"] == 120
    assert policy["visit_for_residency"] == ["resident"]
