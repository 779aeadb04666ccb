"""Rates (contract §5) and the monthly bulletin, assembled from the three aggregate queries."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.stats import policy
from services.feedback.stats import repository as queries

GroupKey = tuple[str | None, ...]


async def rates(
    session: AsyncSession, group_by: Sequence[str], start: datetime, end: datetime, zone: ZoneInfo
) -> dict[str, Any]:
    tz = zone.key
    await queries.tune(session)
    counts: dict[GroupKey, dict[str, int]] = {}
    contact: dict[GroupKey, dict[str, dict[str, float | int | None]]] = {}
    n = len(group_by)

    def key(row: dict[str, Any]) -> GroupKey:
        return tuple(row[f"g{i}"] for i in range(n))

    for row in await queries.case_counts(session, group_by, start, end, tz):
        group = counts.setdefault(key(row), {})
        for name, value in row.items():
            if not name.startswith(("g", "ttfc_")):
                group[name] = int(value)
        contact[key(row)] = {
            tier: {
                "p50": _seconds(row[f"ttfc_{tier}_p50"]),
                "p90": _seconds(row[f"ttfc_{tier}_p90"]),
                "count": int(row[f"ttfc_{tier}_count"]),
            }
            for tier in ("sms", "call", "visit")
        }
    for row in await queries.sla_counts(session, group_by, start, end, tz):
        group = counts.setdefault(key(row), {})
        group[f"{row['tier']}_due"] = group.get(f"{row['tier']}_due", 0) + int(row["due"])
        group[f"{row['tier']}_met"] = group.get(f"{row['tier']}_met", 0) + int(row["met"])
    for row in await queries.post_warning_counts(session, group_by, start, end, tz):
        group = counts.setdefault(key(row), {})
        group["warned_subjects"] = int(row["warned_subjects"])
        group["post_warning_subjects"] = int(row["post_warning_subjects"])
    if not group_by:
        counts.setdefault((), {})  # with no grouping there is always exactly one group, even with no data
    groups = []
    for group_key in sorted(counts, key=lambda k: tuple("" if v is None else v for v in k)):
        values, shown = policy.rates(counts[group_key])
        groups.append({
            "key": dict(zip(group_by, group_key, strict=True)),
            "rates": values,
            "counts": shown,
            "cases": counts[group_key].get("cases", 0),
            "post_warning_cases": counts[group_key].get("post_warning_subjects", 0),
            "time_to_first_contact": contact.get(group_key, _no_contact()),
        })  # fmt: skip
    return {"from": start.isoformat(), "to": end.isoformat(), "group_by": list(group_by), "groups": groups}


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _no_contact() -> dict[str, dict[str, float | int | None]]:
    return {tier: {"p50": None, "p90": None, "count": 0} for tier in ("sms", "call", "visit")}


async def monthly(session: AsyncSession, month: policy.Month, zone: ZoneInfo) -> dict[str, Any]:
    """The monthly bulletin: areas and streets ranked, the worst three flagged, and streets among the worst three
    in both of the last two complete quarters flagged for supervision (挂牌督办)."""
    start, end = month.window(zone)
    names = await queries.areas(session)
    areas = [
        {**_entry(group, "area"), **_area_names(names, group["key"]["area"])}
        for group in (await rates(session, ("area",), start, end, zone))["groups"]
    ]
    streets = [_entry(group, "street") for group in (await rates(session, ("street",), start, end, zone))["groups"]]
    quarters = policy.completed_quarters(month)
    worst_by_quarter = []
    for quarter in quarters:
        q_start, q_end = quarter.window(zone)
        ranked = policy.rank(
            [_entry(g, "street") for g in (await rates(session, ("street",), q_start, q_end, zone))["groups"]]
        )
        worst_by_quarter.append(policy.worst(ranked))
    supervised = set.intersection(*worst_by_quarter) if worst_by_quarter else set()
    ranked_streets = [{**s, "supervised": s["key"] in supervised} for s in policy.rank(streets)]
    return {
        "month": str(month),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "quarters": [str(q) for q in quarters],
        "areas": policy.rank(areas),
        "streets": ranked_streets,
        "supervised_streets": sorted(supervised),
    }


def _entry(group: dict[str, Any], dimension: str) -> dict[str, Any]:
    counts = group["counts"]
    return {
        "key": group["key"][dimension] or "unassigned",
        "cases": group["cases"],
        "warned_subjects": counts["post_warning_rate"]["denominator"],
        "post_warning_cases": group["post_warning_cases"],
        "post_warning_rate": group["rates"]["post_warning_rate"],
        "finished_visits": counts["visit_met_rate"]["denominator"],
        "dissuasion_rate": group["rates"]["dissuasion_rate"],
        "call_connected_rate": group["rates"]["call_connected_rate"],
        "overall_dissuasion_rate": group["rates"]["overall_dissuasion_rate"],
    }


def _area_names(names: dict[str, dict[str, Any]], code: str | None) -> dict[str, Any]:
    area = names.get(code or "")
    return {
        "area_name": area["area_name"] if area else None,
        "station": area["station"] if area else None,
        "street": area["street"] if area else None,
    }


CSV_COLUMNS = [
    "section", "rank", "key", "area_name", "station", "street", "cases", "warned_subjects", "post_warning_cases",
    "post_warning_rate", "finished_visits", "dissuasion_rate", "call_connected_rate", "overall_dissuasion_rate",
    "worst_three", "supervised",
]  # fmt: skip


def bulletin_csv(bulletin: dict[str, Any]) -> str:
    """The bulletin as one CSV table (areas, then streets), with a byte-order mark so that spreadsheet programs
    read it as UTF-8 and show the Chinese names."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for section in ("areas", "streets"):
        for entry in bulletin[section]:
            flags = {k: _yes_no(entry.get(k)) for k in ("worst_three", "supervised")}
            writer.writerow({**entry, **flags, "section": section[:-1]})
    return out.getvalue()


def _yes_no(flag: object) -> str:
    return "" if flag is None else "yes" if flag else "no"
