"""services.feedback.stats.policy: the rate formulas, windows, months, quarters and the bulletin's ranking."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from services.feedback.stats import policy
from services.feedback.stats.policy import InvalidQuery, Month, Quarter

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_rate_with_nothing_to_divide_by_is_null_not_zero() -> None:
    assert policy.ratio(0, 0) is None
    assert policy.ratio(0, 5) == 0.0
    assert policy.ratio(450, 600) == 0.75


def test_every_rate_comes_with_its_numerator_and_denominator() -> None:
    values, counts = policy.rates(
        {"connected_cases": 450, "call_cases": 600, "visits_dissuaded": 170, "visits_judged": 200}
    )
    assert values["call_connected_rate"] == 0.75
    assert values["dissuasion_rate"] == 0.85
    assert counts["dissuasion_rate"] == {"numerator": 170, "denominator": 200}
    assert values["visit_met_rate"] is None
    assert counts["visit_met_rate"] == {"numerator": 0, "denominator": 0}
    assert set(values) == set(policy.RATES)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, ()), ("", ()), ("area", ("area",)), ("area, fraud_type,month", ("area", "fraud_type", "month"))],
)
def test_group_by_parses(raw: str | None, expected: tuple[str, ...]) -> None:
    assert policy.parse_group_by(raw) == expected


@pytest.mark.parametrize("raw", ["nope", "area,area", "day,month", "area;street"])
def test_bad_group_by_names_the_field(raw: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        policy.parse_group_by(raw)
    assert caught.value.field == "group_by"


def test_times_without_an_offset_are_the_districts_local_time() -> None:
    now = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    start, end = policy.window("2026-10-01", "2026-11-01T00:00:00", SHANGHAI, now)
    assert start == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    start, _ = policy.window("2026-10-01T00:00:00Z", None, SHANGHAI, now)
    assert start == datetime(2026, 10, 1, tzinfo=UTC)


def test_the_default_window_is_the_current_local_month_up_to_now() -> None:
    # 2026-10-31 20:00 UTC is already 1 November in Shanghai
    now = datetime(2026, 10, 31, 20, 0, tzinfo=UTC)
    assert policy.window(None, None, SHANGHAI, now) == (datetime(2026, 11, 1, tzinfo=SHANGHAI), now)


@pytest.mark.parametrize(
    ("raw_from", "raw_to", "field"),
    [("yesterday", None, "from"), ("2026-10-01", "2026-13-01", "to"), ("2026-10-02", "2026-10-01", "to"),
     ("2020-01-01", "2026-01-01", "to")],
)  # fmt: skip
def test_bad_windows_name_the_field(raw_from: str, raw_to: str | None, field: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        policy.window(raw_from, raw_to, SHANGHAI, datetime(2026, 11, 22, tzinfo=UTC))
    assert caught.value.field == field


def test_a_month_is_local_midnight_to_local_midnight() -> None:
    assert Month.parse("2026-12").window(SHANGHAI) == (
        datetime(2026, 12, 1, tzinfo=SHANGHAI),
        datetime(2027, 1, 1, tzinfo=SHANGHAI),
    )
    assert str(Month(2026, 1).plus(-1)) == "2025-12"


@pytest.mark.parametrize("raw", ["2026-13", "2026-1", "26-10", "2026-00", "abcd-ef", "2026-10-01", ""])
def test_bad_months_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        Month.parse(raw)
    assert caught.value.field == "month"


@pytest.mark.parametrize(
    ("month", "quarters"),
    [(Month(2026, 12), ["2026-Q3", "2026-Q4"]), (Month(2026, 10), ["2026-Q2", "2026-Q3"]),
     (Month(2026, 2), ["2025-Q3", "2025-Q4"]), (Month(2026, 3), ["2025-Q4", "2026-Q1"])],
)  # fmt: skip
def test_the_supervision_look_back_is_the_last_two_complete_quarters(month: Month, quarters: list[str]) -> None:
    assert [str(q) for q in policy.completed_quarters(month)] == quarters


def test_a_quarter_spans_three_local_months() -> None:
    assert Quarter(2026, 4).window(SHANGHAI) == (
        datetime(2026, 10, 1, tzinfo=SHANGHAI),
        datetime(2027, 1, 1, tzinfo=SHANGHAI),
    )


def _entry(key: str, post_warning: int, rate: float | None) -> dict[str, object]:
    return {"key": key, "post_warning_cases": post_warning, "dissuasion_rate": rate}


def test_ranking_puts_fewest_post_warning_cases_then_best_dissuasion_first_and_flags_the_worst_three() -> None:
    ranked = policy.rank([
        _entry("a", 0, 0.9), _entry("b", 2, 0.99), _entry("c", 0, 0.95), _entry("d", 1, None),
        _entry("e", 1, 0.5), _entry("f", 0, None),
    ])  # fmt: skip
    assert [e["key"] for e in ranked] == ["c", "a", "f", "e", "d", "b"]
    assert [e["rank"] for e in ranked] == [1, 2, 3, 4, 5, 6]
    assert policy.worst(ranked) == {"e", "d", "b"}


def test_with_three_entries_or_fewer_nobody_is_flagged_worst() -> None:
    ranked = policy.rank([_entry("a", 3, 0.1), _entry("b", 0, 1.0), _entry("c", 1, 0.5)])
    assert not policy.worst(ranked)
