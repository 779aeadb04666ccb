"""The fault suite's pure parts, with plain values: the draws, the checks, the report."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from shared.events import Envelope, Topic
from tests.faults import chaos, checks, draws, report
from tests.faults.checks import Deadline, Event, Findings, Message, Phase, Snapshot, Task
from tests.faults.load import MAX_RETRY_WAIT_S, retry_wait
from tests.faults.plan import SHORT
from tests.faults.scenario import FaultRecord

AREAS = ("370202-011", "370202-012")
NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)

# --- draws ------------------------------------------------------------------------------------------------------


def test_draws_depend_on_the_seed_and_the_warning_only() -> None:
    assert draws.warning_plan(7, 3, AREAS) == draws.warning_plan(7, 3, AREAS)
    assert draws.call_answer(7, 3, 2) == draws.call_answer(7, 3, 2)
    plans = {draws.warning_plan(seed, 3, AREAS) for seed in range(40)}
    assert len(plans) > 1


def test_pick_follows_the_cumulative_weights() -> None:
    weighted = (("a", 0.25), ("b", 0.5), ("c", 0.25))
    assert [draws.pick(weighted, u) for u in (0.0, 0.2499, 0.25, 0.7499, 0.75, 0.9999)] == list("aabbcc")


def test_the_draws_come_out_near_their_weights() -> None:
    risks = Counter(draws.warning_plan(1, n, AREAS).risk for n in range(4000))
    for risk, weight in draws.RISKS:
        assert abs(risks[risk] / 4000 - weight) < 0.03, risks
    assert set(risks) == {"low", "medium", "high"}  # never critical: no call and visit side by side


def test_a_call_has_a_dissuasion_result_only_when_connected() -> None:
    answers = [draws.call_answer(5, n, 1) for n in range(500)]
    assert all((a.dissuasion_result is not None) == (a.call_result == "connected") for a in answers)


def test_phones_are_distinct_per_phase_and_warning_and_valid_mobiles() -> None:
    phones = {draws.phone(phase, n) for phase in (1, 2) for n in range(1000)}
    assert len(phones) == 2000
    assert all(len(p) == 11 and p.startswith("13") for p in phones)
    with pytest.raises(ValueError):
        draws.phone(10, 1)


def test_the_record_is_the_same_for_the_same_warning() -> None:
    plan = draws.warning_plan(3, 9, AREAS)
    record = draws.warning_record(plan, run="r", phase=1, issued_at=NOW)
    assert record == draws.warning_record(plan, run="r", phase=1, issued_at=NOW)
    assert record["external_id"] == "FAULTS-r-1-000009"
    assert record["risk_level"] == plan.risk and record["in_progress"] is False


# --- the load generator's reading of Retry-After ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wait"), [("1", 1.0), ("60", MAX_RETRY_WAIT_S), ("0", None), ("soon", None), ("", None)]
)
def test_retry_after_is_honoured_up_to_a_cap_and_a_bad_one_is_none(value: str, wait: float | None) -> None:
    assert retry_wait(httpx.Headers({"Retry-After": value} if value else {})) == wait


# --- poison ---------------------------------------------------------------------------------------------------------


def test_poison_has_every_kind_and_only_two_are_envelopes_of_known_types() -> None:
    kinds = dict(chaos.poison_messages(Topic.WARNINGS_RECEIVED, 3))
    assert list(kinds) == ["undecodable", "not_an_envelope", "invalid_data", "future_version", "unknown_type"]
    with pytest.raises(ValueError):
        orjson.loads(kinds["undecodable"])
    future = Envelope.model_validate_json(kinds["future_version"])
    assert (future.type, future.schema_version) == ("warning.received", 99)
    assert Envelope.model_validate_json(kinds["unknown_type"]).type == "fault.unknown-type"


def test_every_consumer_group_of_a_topic_must_dead_letter_its_poison() -> None:
    poisons = [chaos.Poison(Topic.REGISTRY_EVENTS, 0, "undecodable", "m1", 5)]
    assert chaos.expected_dead_letters(poisons) == {("m1", "intake-registry"), ("m1", "feedback-registry")}


# --- checks ---------------------------------------------------------------------------------------------------------


def _snapshot() -> tuple[Phase, Phase, Snapshot]:
    """Warning 0 in both phases: a case with an SMS and one call; both closed, one SMS each."""
    faulty, baseline = Phase("faulty", "f", {0: "w-f"}), Phase("fault-free", "b", {0: "w-b"})
    snap = Snapshot(now=NOW)
    for phase, suffix in ((faulty, "f"), (baseline, "b")):
        snap.stored[f"w-{suffix}"] = (phase.source, f"X-{suffix}")
        snap.case_of[f"w-{suffix}"] = [f"c-{suffix}"]
        snap.cases[f"c-{suffix}"] = ("closed", "dissuaded")
        snap.case_phone[f"c-{suffix}"] = f"phone-{suffix}"
        snap.tasks += [
            Task(f"sms-{suffix}", f"c-{suffix}", "sms", 1, "done", True),
            Task(f"call-{suffix}", f"c-{suffix}", "call", 1, "done", False),
        ]
        snap.messages.append(Message(f"m-{suffix}", f"phone-{suffix}", f"sms-{suffix}"))
        snap.events += [Event("task.created", {"task_id": t}) for t in (f"sms-{suffix}", f"call-{suffix}")]
        snap.events += [Event("case.closed", {"case_id": f"c-{suffix}"})]
        snap.outcomes[f"call-{suffix}"] = 1
        snap.deadlines.append(Deadline(1, "task.ack", f"call-{suffix}", NOW - timedelta(minutes=1), NOW))
    return faulty, baseline, snap


def test_a_clean_run_has_no_findings() -> None:
    assert checks.check_all(*_snapshot()).problems == []


def test_a_warning_without_a_case_is_lost_and_one_in_two_cases_is_duplicated() -> None:
    faulty, baseline, snap = _snapshot()
    snap.case_of["w-f"] = []
    assert len(checks.check_all(faulty, baseline, snap).lost) >= 1
    faulty, baseline, snap = _snapshot()
    snap.case_of["w-f"] = ["c-f", "c-f2"]
    snap.cases["c-f2"] = ("closed", "dissuaded")
    findings = Findings()
    checks.warnings_reached_dispatch(faulty, snap, findings)
    assert findings.duplicated == ["faulty warning 0 (w-f) is in 2 cases"]


def test_an_acknowledged_warning_intake_does_not_have_is_lost() -> None:
    faulty, _baseline, snap = _snapshot()
    del snap.stored["w-f"]
    findings = Findings()
    checks.warnings_reached_dispatch(faulty, snap, findings)
    assert findings.lost == ["faulty warning 0 (w-f) was acknowledged but is not stored"]


def test_a_task_more_or_less_than_without_faults_is_duplicated_or_lost() -> None:
    faulty, baseline, snap = _snapshot()
    snap.tasks.append(Task("call-f2", "c-f", "call", 1, "cancelled", False))
    findings = Findings()
    checks.flows_match(faulty, baseline, snap, findings)
    assert findings.duplicated == ["warning 0: tasks {('call', 1): 1} beyond the fault-free run's"]
    snap.tasks = [t for t in snap.tasks if t.case_id != "c-f"]
    findings = Findings()
    checks.flows_match(faulty, baseline, snap, findings)
    assert findings.lost == ["warning 0: tasks {('sms', 1): 1, ('call', 1): 1} of the fault-free run never created"]


def test_a_second_sms_to_a_subject_or_under_a_key_is_duplicated() -> None:
    _faulty, _baseline, snap = _snapshot()
    snap.messages.append(Message("m-f2", "phone-f", "sms-f"))
    findings = Findings()
    checks.sms_once(snap, findings)
    assert findings.duplicated == ["SMS task sms-f: 2 messages at the gateway", "case c-f: 2 SMS to its subject"]


def test_an_sms_recorded_as_sent_but_missing_at_the_gateway_is_lost() -> None:
    _faulty, _baseline, snap = _snapshot()
    snap.messages = [m for m in snap.messages if m.idempotency_key != "sms-b"]
    findings = Findings()
    checks.sms_once(snap, findings)
    assert findings.lost == ["SMS task sms-b is recorded as sent, but the gateway has no message for it"]


def test_an_effect_committed_twice_is_duplicated() -> None:
    _faulty, _baseline, snap = _snapshot()
    breach = {"task_id": "call-f", "case_id": "c-f", "kind": "ack", "due_at": "t"}
    snap.events += [
        Event("sla.breached", breach),
        Event("sla.breached", breach),
        Event("sla.breached", breach | {"due_at": "u"}),
    ]
    findings = Findings()
    checks.events_once(snap, findings)
    assert findings.duplicated == ["sla.breached ('call-f', 'c-f', 'ack', 't'): committed 2 times"]


def test_an_overdue_unfired_deadline_is_lost_and_an_open_case_needs_a_deadline_ahead() -> None:
    faulty, baseline, snap = _snapshot()
    snap.deadlines.append(Deadline(2, "task.due", "call-f", NOW - timedelta(minutes=5), None))
    snap.cases["c-b"] = ("calling", None)
    findings = Findings()
    checks.deadlines_kept((faulty, baseline), snap, findings)
    assert findings.lost == [f"deadline 2 (task.due) due {(NOW - timedelta(minutes=5)).isoformat()} never fired"]
    assert findings.other == ["fault-free warning 0: case c-b is calling with no deadline"]
    snap.deadlines.append(Deadline(3, "task.due", "call-b", NOW + timedelta(minutes=5), None))
    findings = Findings()
    checks.deadlines_kept((faulty, baseline), snap, findings)
    assert findings.other == []


def test_a_case_of_no_acknowledged_warning_is_a_phantom() -> None:
    faulty, baseline, snap = _snapshot()
    snap.cases["c-x"] = ("sms", None)
    findings = Findings()
    checks.phantom_cases((faulty, baseline), snap, findings)
    assert findings.other == ["case c-x belongs to no acknowledged warning"]


def test_rates_are_compared_by_numerator_and_denominator() -> None:
    group = {"counts": {name: {"numerator": 1, "denominator": 2} for name in checks.OUTCOME_RATES}}
    rates = {"groups": [{"key": {"source": "f"}, **group}]}
    counts = checks.rate_counts(rates, "f")
    assert counts["dissuasion_rate"] == (1, 2)
    findings = Findings()
    checks.rates_match(counts, counts, findings)
    assert findings.problems == []
    checks.rates_match(counts | {"visit_met_rate": (2, 2)}, counts, findings)
    assert findings.other == ["visit_met_rate: (2, 2) with faults, (1, 2) without"]
    assert checks.rate_counts(rates, "nobody") == {}


# --- the report -----------------------------------------------------------------------------------------------------


def _outcome(problems: list[str]) -> object:
    from tests.faults.run import Outcome

    outcome = Outcome(SHORT, 42, NOW, wall_s=100, acknowledged=10, acknowledged_fault_free=10, problems=problems)
    outcome.faults = [FaultRecord("SIGKILL intake", 3.0, 1.5), FaultRecord("broker lost", 1.0, 9.25, "(x)")]
    return outcome


def test_the_section_is_rewritten_between_its_markers_and_keeps_recent_runs() -> None:
    doc = f"# R\n\n{report.BEGIN}\nold\n{report.END}\n\n<!-- bad-input:begin -->\nkeep\n<!-- bad-input:end -->\n"
    first = report.rewrite(doc, report.section(_outcome([]), "2026-11-28 08:00", [], "1 / 1 / 1"))  # type: ignore[arg-type]
    assert "old" not in first and "keep" in first
    assert "| max recovery time | 9.2 s |" in first or "| max recovery time | 9.3 s |" in first
    rows = report.previous_rows(first)
    assert rows == ["| 2026-11-28 08:00 | 42 | 10 | 0 | 0 | 9.2 s (broker lost) | passed |"]
    second = report.section(_outcome(["x"]), "2026-11-28 09:00", rows, "1 / 1 / 1")  # type: ignore[arg-type]
    assert report.previous_rows(report.rewrite(first, second)) == [
        "| 2026-11-28 09:00 | 42 | 10 | 0 | 0 | 9.2 s (broker lost) | FAILED (1 problems) |",
        rows[0],
    ]
    with pytest.raises(ValueError):
        report.rewrite("no markers", second)
