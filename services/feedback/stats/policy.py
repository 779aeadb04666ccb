"""The rates of contract §5 and the monthly bulletin's ranking, as pure functions of counts and dates."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.instants import in_utc

#: Each rate of contract §5 and the (numerator, denominator) counts it is the ratio of.
RATES: dict[str, tuple[str, str]] = {
    "call_connected_rate": ("connected_cases", "call_cases"),
    "call_attempt_connected_rate": ("connected_calls", "calls"),
    "visit_met_rate": ("visits_met", "visits"),
    "dissuasion_rate": ("visits_dissuaded", "visits_judged"),
    "overall_dissuasion_rate": ("closed_dissuaded", "closed_judged"),
    "post_warning_rate": ("post_warning_subjects", "warned_subjects"),
    "antifraud_app_install_rate": ("visits_app_installed", "visits_checked"),
    "sla_compliance_sms": ("sms_met", "sms_due"),
    "sla_compliance_call": ("call_met", "call_due"),
    "sla_compliance_visit": ("visit_met", "visit_due"),
    "sla_compliance_follow_up": ("follow_up_met", "follow_up_due"),
}
TIERS = ("sms", "call", "visit", "follow_up")
DIMENSIONS = ("area", "station", "street", "team", "fraud_type", "source")
PERIODS = ("day", "week", "month")
#: Longest window a rates query may cover: two years and a day, enough for year-on-year comparisons.
MAX_WINDOW = timedelta(days=731)


class InvalidQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def ratio(numerator: int, denominator: int) -> float | None:
    """A rate; None when there is nothing to divide by (no data is not a rate of 0)."""
    return None if denominator == 0 else numerator / denominator


def rates(counts: Mapping[str, int]) -> tuple[dict[str, float | None], dict[str, dict[str, int]]]:
    """Every rate with its numerator and denominator, so each figure can be re-checked."""
    values: dict[str, float | None] = {}
    shown: dict[str, dict[str, int]] = {}
    for name, (num, den) in RATES.items():
        numerator, denominator = counts.get(num, 0), counts.get(den, 0)
        values[name] = ratio(numerator, denominator)
        shown[name] = {"numerator": numerator, "denominator": denominator}
    return values, shown


def parse_group_by(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    names = tuple(part.strip() for part in raw.split(","))
    for name in names:
        if name not in DIMENSIONS and name not in PERIODS:
            allowed = ", ".join(DIMENSIONS + PERIODS)
            raise InvalidQuery("group_by", f"unknown grouping {name!r} (allowed: {allowed})")
    if len(set(names)) != len(names):
        raise InvalidQuery("group_by", "a grouping is named twice")
    if sum(name in PERIODS for name in names) > 1:
        raise InvalidQuery("group_by", "group by at most one of day, week and month")
    return names


def parse_instant(field: str, raw: str, zone: ZoneInfo) -> datetime:
    """An ISO date or date-time; one without an offset is the district's local time (a date: its midnight)."""
    try:
        if len(raw) == 10:
            value = datetime.combine(date.fromisoformat(raw), time(), zone)
        else:
            value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidQuery(field, f"{raw!r} is not an ISO 8601 date or date-time") from None
    value = value if value.tzinfo is not None else value.replace(tzinfo=zone)
    try:
        in_utc(value)
    except ValueError as exc:
        raise InvalidQuery(field, f"{raw!r} {exc}") from None
    return value


def window(raw_from: str | None, raw_to: str | None, zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """[from, to) by warning intake time; by default the current local month up to now."""
    end = parse_instant("to", raw_to, zone) if raw_to else now
    if raw_from:
        start = parse_instant("from", raw_from, zone)
    else:
        local = end.astimezone(zone)
        start = datetime(local.year, local.month, 1, tzinfo=zone)
        try:
            in_utc(start)  # the month of a `to` in January of the year 1
        except ValueError as exc:
            raise InvalidQuery("from", f"the default (the month of `to`) {exc}") from None
    if start >= end:
        raise InvalidQuery("to", "the window is empty: `to` must be after `from`")
    if end - start > MAX_WINDOW:
        raise InvalidQuery("to", f"the window is longer than {MAX_WINDOW.days} days")
    return start, end


_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, raw: str) -> Month:
        # int() alone would also take "2026-+1", "2026- 1" and full-width digits as January
        if not _MONTH.fullmatch(raw):
            raise InvalidQuery("month", f"{raw!r} is not a month (YYYY-MM)")
        year, month = int(raw[:4]), int(raw[5:])
        if not 1 <= month <= 12 or not 2000 <= year <= 2100:
            raise InvalidQuery("month", f"{raw!r} is not a month (YYYY-MM)")
        return cls(year, month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def plus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def window(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        following = self.plus(1)
        return datetime(self.year, self.month, 1, tzinfo=zone), datetime(
            following.year, following.month, 1, tzinfo=zone
        )


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int  # 1..4

    def __str__(self) -> str:
        return f"{self.year}-Q{self.number}"

    def window(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        first = Month(self.year, 3 * self.number - 2)
        return first.window(zone)[0], first.plus(3).window(zone)[0]


def completed_quarters(month: Month, count: int = 2) -> list[Quarter]:
    """The `count` latest quarters complete by the end of `month`, oldest first (the 挂牌督办 look-back)."""
    quarter = Quarter(month.year, (month.month - 1) // 3 + 1)
    if month.month % 3 != 0:  # the month's own quarter is not over yet
        quarter = _previous(quarter)
    found = [quarter]
    while len(found) < count:
        found.insert(0, _previous(found[0]))
    return found


def _previous(quarter: Quarter) -> Quarter:
    return Quarter(quarter.year - 1, 4) if quarter.number == 1 else Quarter(quarter.year, quarter.number - 1)


#: How many of the worst-ranked entries a bulletin flags.
WORST = 3


def rank(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Best first: fewest post-warning cases, then highest face-to-face dissuasion rate, then code.

    An entry without a dissuasion rate (no finished visit) ranks after every measured rate at the same
    post-warning count: a bulletin cannot credit dissuasion that was not done. The last three are flagged
    `worst_three`, if there are more than three entries (with three or fewer, "worst" says nothing).
    """

    def key(entry: Mapping[str, Any]) -> tuple[int, int, float, str]:
        rate = entry["dissuasion_rate"]
        return (entry["post_warning_cases"], rate is None, -(rate or 0.0), str(entry["key"]))

    ordered = sorted(entries, key=key)
    flagged = len(ordered) > WORST
    return [
        {**entry, "rank": i + 1, "worst_three": flagged and i >= len(ordered) - WORST}
        for i, entry in enumerate(ordered)
    ]


def worst(ranked: Sequence[Mapping[str, Any]]) -> set[str]:
    return {str(entry["key"]) for entry in ranked if entry["worst_three"]}
