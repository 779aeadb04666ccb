"""Every rule of contract §3 as a plain-value test of the pure escalation decisions and the policy model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.dispatch.cases import policy as rules
from services.dispatch.policies.policy import PolicyFile, PolicyValues, resolve

DEFAULT = PolicyValues()


def tiers(decision: rules.Decision) -> list[str]:
    return [t.tier for t in decision.tasks]


def open_case(**overrides: object) -> rules.Decision:
    args: dict[str, object] = {
        "risk": "high", "in_progress": False, "residency": "unknown", "has_phone": True, "rewarned": False,
        "policy": DEFAULT,
    }  # fmt: skip
    args.update(overrides)
    return rules.opening(**args)  # type: ignore[arg-type]


# --- opening a case ---------------------------------------------------------------------------------------


def test_low_risk_gets_an_sms_only_within_60_s() -> None:
    decision = open_case(risk="low")
    assert tiers(decision) == ["sms"]
    assert decision.tasks[0].due_in_s == 60


@pytest.mark.parametrize(("risk", "due"), [("medium", 1800), ("high", 300)])
def test_medium_and_high_get_an_sms_and_a_first_call_in_time(risk: str, due: int) -> None:
    decision = open_case(risk=risk)
    assert tiers(decision) == ["sms", "call"]
    call = decision.tasks[1]
    assert (call.due_in_s, call.attempt, call.ack_within_s) == (due, 1, 120)


@pytest.mark.parametrize("change", [{"risk": "critical"}, {"in_progress": True}])
def test_critical_or_in_progress_starts_call_and_visit_at_once(change: dict[str, object]) -> None:
    decision = open_case(**change)
    assert tiers(decision) == ["sms", "call", "visit"]
    assert decision.tasks[1].due_in_s == (0 if change.get("risk") == "critical" else 300)
    assert decision.tasks[2].due_in_s == 3600


@pytest.mark.parametrize("residency", ["resident", "worker", "transit"])
def test_the_area_rule_upgrades_phone_dissuasion_to_a_visit(residency: str) -> None:
    area = PolicyFile(visit_for_residency=["resident", "worker", "transit"])
    decision = open_case(residency=residency, policy=resolve(DEFAULT, area, "high"))
    assert "visit" in tiers(decision)
    assert "residency_rule" in decision.notes
    assert "visit" not in tiers(open_case(residency="unknown", policy=resolve(DEFAULT, area, "high")))


def test_the_built_in_default_visits_nobody_for_residency() -> None:
    assert tiers(open_case(residency="resident")) == ["sms", "call"]


def test_a_rewarned_subject_starts_one_tier_higher() -> None:
    assert tiers(open_case(risk="low", rewarned=True)) == ["sms", "call"]
    assert open_case(risk="low", rewarned=True).tasks[1].due_in_s == 1800
    assert tiers(open_case(risk="high", rewarned=True)) == ["sms", "call", "visit"]


def test_no_phone_means_a_visit() -> None:
    assert tiers(open_case(has_phone=False)) == ["visit"]


def test_rural_areas_may_allow_more_time_on_site() -> None:
    rural = resolve(DEFAULT, PolicyFile(visit_arrive_within_s=7200), "critical")
    assert open_case(risk="critical", policy=rural).tasks[-1].due_in_s == 7200


# --- calls --------------------------------------------------------------------------------------------------


def call(**overrides: object) -> rules.Decision:
    args: dict[str, object] = {
        "attempt": 1, "call_result": "no_answer", "dissuasion_result": None, "policy": DEFAULT, "visit_open": False,
    }  # fmt: skip
    args.update(overrides)
    return rules.after_call(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("result", ["no_answer", "powered_off", "rejected"])
def test_an_unanswered_call_is_retried_5_min_later_until_the_third(result: str) -> None:
    first = call(call_result=result, attempt=1)
    assert [(t.tier, t.attempt, t.due_in_s) for t in first.tasks] == [("call", 2, 300)]
    assert call(call_result=result, attempt=2).tasks[0].attempt == 3
    third = call(call_result=result, attempt=3)
    assert tiers(third) == ["visit"]
    assert third.escalation == ("call", "visit", "not_connected")


def test_busy_escalates_to_a_visit_at_once_unless_the_area_says_otherwise() -> None:
    busy = call(call_result="busy")
    assert busy.escalation == ("call", "visit", "busy")
    relaxed = resolve(DEFAULT, PolicyFile(escalate_on_busy=False), "high")
    assert tiers(call(call_result="busy", policy=relaxed)) == ["call"]


def test_connected_and_dissuaded_closes() -> None:
    assert call(call_result="connected", dissuasion_result="dissuaded").close == "dissuaded"


def test_connected_but_not_dissuaded_goes_to_a_visit() -> None:
    decision = call(call_result="connected", dissuasion_result="not_dissuaded")
    assert decision.escalation == ("call", "visit", "not_dissuaded")


@pytest.mark.parametrize("result", ["already_defrauded", "false_positive"])
def test_already_defrauded_or_false_positive_closes(result: str) -> None:
    assert call(call_result="connected", dissuasion_result=result).close == result


def test_a_mandated_visit_goes_on_even_if_the_call_dissuaded() -> None:
    decision = call(call_result="connected", dissuasion_result="dissuaded", visit_open=True)
    assert decision.close is None and decision.tasks == ()


def test_no_second_visit_is_created_while_one_is_open() -> None:
    assert call(call_result="busy", visit_open=True).tasks == ()
    assert call(call_result="no_answer", attempt=3, visit_open=True).tasks == ()


# --- visits and follow-ups ------------------------------------------------------------------------------------


def test_a_dissuaded_visit_is_followed_up_by_the_grid_worker_within_24_h() -> None:
    decision = rules.after_visit(dissuasion_result="dissuaded", not_met_so_far=0, policy=DEFAULT)
    assert [(t.tier, t.due_in_s) for t in decision.tasks] == [("follow_up", 86400)]
    assert rules.after_follow_up(dissuaded_at_visit=True).close == "dissuaded"


def test_not_met_gets_one_more_visit_then_the_supervisor() -> None:
    first = rules.after_visit(dissuasion_result="not_met", not_met_so_far=0, policy=DEFAULT)
    assert tiers(first) == ["visit"] and first.close is None
    second = rules.after_visit(dissuasion_result="not_met", not_met_so_far=1, policy=DEFAULT)
    assert second.close == "unreachable"
    assert second.alert_supervisor


def test_already_defrauded_at_the_door_closes_flagged_for_investigation() -> None:
    decision = rules.after_visit(dissuasion_result="already_defrauded", not_met_so_far=0, policy=DEFAULT)
    assert decision.close == "already_defrauded"
    assert decision.alert_supervisor and "investigation" in decision.alert_supervisor


def test_low_risk_sms_delivered_closes_and_undelivered_escalates() -> None:
    assert rules.after_sms(delivered=True, sms_only=True, policy=DEFAULT).close == "sms_only"
    undelivered = rules.after_sms(delivered=False, sms_only=True, policy=DEFAULT)
    assert undelivered.escalation == ("sms", "call", "sms_undeliverable")
    assert [(t.tier, t.due_in_s) for t in undelivered.tasks] == [("call", 1800)]
    assert rules.after_sms(delivered=True, sms_only=False, policy=DEFAULT) == rules.Decision()


# --- acknowledgement and deadlines ------------------------------------------------------------------------------


def test_a_missed_acknowledgement_renotifies_then_reassigns() -> None:
    assert rules.on_ack_missed(tier="visit", misses=1) == ("renotify",)
    assert rules.on_ack_missed(tier="visit", misses=2) == ("reassign_backup", "alert_supervisor")
    assert rules.on_ack_missed(tier="call", misses=2) == ("alert_supervisor",)


def test_a_missed_deadline_escalates_and_never_drops_the_case() -> None:
    assert rules.on_due_missed(tier="call", visit_open=False, policy=DEFAULT).escalation == (
        "call", "visit", "call_deadline_missed",
    )  # fmt: skip
    assert rules.on_due_missed(tier="visit", visit_open=True, policy=DEFAULT).alert_supervisor
    assert rules.on_due_missed(tier="follow_up", visit_open=False, policy=DEFAULT).alert_supervisor


# --- the policy model -------------------------------------------------------------------------------------------


def test_the_contracts_example_file_is_valid_and_inherits_the_rest() -> None:
    area = PolicyFile.model_validate(
        {"sms_within_s": 60, "call_first_within_s": {"medium": 1800, "high": 300, "critical": 0},
         "call_attempts": 3, "call_retry_interval_s": 300, "visit_arrive_within_s": 3600,
         "follow_up_within_s": 86400, "visit_for_residency": ["resident", "worker", "transit"],
         "sms_only_risk": ["low"], "ack_within_s": 120, "escalate_on_busy": True, "rewarn_window_s": 604800}
    )  # fmt: skip
    effective = resolve(DEFAULT, area, "high")
    assert effective.visit_for_residency == ["resident", "worker", "transit"]
    assert effective.unassigned_within_s == DEFAULT.unassigned_within_s


def test_a_risk_override_applies_to_that_risk_only() -> None:
    area = PolicyFile(by_risk={"critical": {"visit_arrive_within_s": 1800}})
    assert resolve(DEFAULT, area, "critical").visit_arrive_within_s == 1800
    assert resolve(DEFAULT, area, "high").visit_arrive_within_s == 3600


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ack_within_s": -1}, "ack_within_s"),
        ({"ack_within_s": 0}, "ack_within_s"),
        ({"visit_arrive_within_s": 10**9}, "visit_arrive_within_s"),
        ({"call_attempts": 0}, "call_attempts"),
        ({"visit_for_residency": ["tourist"]}, "visit_for_residency"),
        ({"sms_only_risk": ["critical"]}, "sms_only_risk"),
        ({"by_risk": {"critical": {"no_such_setting": 1}}}, "no_such_setting"),
        ({"by_risk": {"high": {"ack_within_s": -5}}}, "ack_within_s"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"call_first_within_s": {"low": 60}}, "call_first_within_s"),
    ],
)
def test_absurd_or_unknown_settings_are_refused_naming_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        PolicyFile.model_validate(body)
    assert field in str(info.value)
