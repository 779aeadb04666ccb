"""The report's rules: which tasks count toward compliance, and feedback's counts for the simulated areas only."""

from datetime import UTC, datetime, timedelta

from services.sim.actors import Tallies
from services.sim.observe import TaskTimes
from services.sim.report import Report, Staffing, Tally, compliance, feedback_counts, judged, per_tier

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
END = T0 + timedelta(hours=2)


def task(
    tier: str = "visit", status: str = "done", done: int | None = 30, due: int = 60, closed: int | None = None
) -> TaskTimes:
    return TaskTimes(
        area_code="370299-001",
        tier=tier,
        status=status,
        created_at=T0,
        due_at=T0 + timedelta(minutes=due),
        done_at=T0 + timedelta(minutes=done) if done is not None else None,
        case_closed_at=T0 + timedelta(minutes=closed) if closed is not None else None,
    )


def test_which_tasks_count_and_how() -> None:
    assert judged(task(done=30), END) is True
    assert judged(task(done=60), END) is True  # on the deadline is on time
    assert judged(task(done=61), END) is False
    assert judged(task(status="acked", done=None), END) is False  # its deadline passed undone
    assert judged(task(status="open", done=None, due=200), END) is None  # not due yet
    assert judged(task(status="cancelled", done=None, closed=20), END) is None  # never due: the case closed
    assert judged(task(status="cancelled", done=None, closed=90), END) is False  # closed after it was missed


def test_compliance_per_area_and_tier() -> None:
    tasks = [task(done=10), task(done=70), task("call", done=3, due=5), task("sms", done=None, status="open")]
    per_area = compliance(tasks, END)
    assert per_area[("370299-001", "visit")] == Tally(met=1, due=2)
    tiers = per_tier(per_area)
    assert tiers["call"].rate == 1.0 and tiers["sms"] == Tally(met=0, due=1) and tiers["follow_up"].rate is None


def test_feedback_counts_are_summed_over_the_simulated_areas_only() -> None:
    rates = {
        "groups": [
            {"key": {"area": "370299-001"}, "counts": {"dissuasion_rate": {"numerator": 9, "denominator": 10}}},
            {"key": {"area": "370299-002"}, "counts": {"dissuasion_rate": {"numerator": 1, "denominator": 2}}},
            {"key": {"area": "370202-012"}, "counts": {"dissuasion_rate": {"numerator": 5, "denominator": 5}}},
        ]
    }
    assert feedback_counts(rates, {"370299-001", "370299-002"}) == {"dissuasion_rate": (10, 12)}


def test_the_markdown_names_the_areas_that_missed_and_what_would_meet_it() -> None:
    report = Report(
        settings=[("seed", "7")], posted=3, accepted=3, cases=3,
        tiers=per_tier({("370299-001", "visit"): Tally(1, 2)}), areas={("370299-001", "visit"): Tally(1, 2)},
        area_names={"370299-001": "青山1号警务区"}, feedback={"dissuasion_rate": (1, 1)},
        responders={"dissuasion_rate": (1, 1)}, expected={"dissuasion_rate": 0.954},
        staffing=[Staffing("370299-001", "青山1号警务区", 2, 1, 1, 0.5, 2, False)],
        sla_target=0.9, visit_sla_min=60, wall_s=60,
    )  # fmt: skip
    text = report.markdown()
    assert "| 370299-001 | 青山1号警务区 | 2 | 1 | 50.0% | 1 | 50.0% | 2 (+1) |" in text
    assert "0 of 1 areas with visits met the target" in text
    assert "| dissuasion_rate | 100.0% | 1/1 | 100.0% (1/1) | 95.4% |" in text


def test_the_responders_tallies_count_as_the_contract_does_over_the_cases_asked() -> None:
    tallies = Tallies(
        calls=[("a", False), ("a", True), ("b", False), ("c", True)],
        visits=[("a", "dissuaded", True), ("b", "not_met", False), ("c", "not_dissuaded", False)],
    )
    counts = tallies.counts({"a", "b"})
    assert counts["call_connected_rate"] == (1, 2)  # cases with a connected call / cases with a call
    assert counts["call_attempt_connected_rate"] == (1, 3)
    assert counts["visit_met_rate"] == (1, 2)
    assert counts["dissuasion_rate"] == (1, 2)
    assert counts["antifraud_app_install_rate"] == (1, 1)  # only met visits carry a checklist
    assert tallies.counts()["call_connected_rate"] == (2, 3)
