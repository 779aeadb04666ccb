"""The rates queries: three aggregate statements over the read models, each one pass over a window.

Grouping expressions come from fixed tables below (never from the caller's text), so building the statements
from them is safe. Row-level security scopes every table to what the caller may see.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

_PERIOD_FORMAT = {
    "day": "to_char(date_trunc('day', {t} AT TIME ZONE :tz), 'YYYY-MM-DD')",
    "week": "to_char(date_trunc('week', {t} AT TIME ZONE :tz), 'IYYY-\"W\"IW')",
    "month": "to_char(date_trunc('month', {t} AT TIME ZONE :tz), 'YYYY-MM')",
}
# Case-level figures group by the case's attributes; tasks and warnings fall back to their own where the case
# is not (yet) known to feedback.
_CASE_DIMS = {
    "area": "c.area_code", "station": "c.station", "street": "c.street", "team": "c.team_id::text",
    "fraud_type": "c.fraud_type", "source": "c.source",
}  # fmt: skip
# A task's area, station and team are the case's (dispatch sets them from it), so only street, fraud type and
# source need the case's row; a warning knows its case's area and station once dispatch has placed it.
_TASK_DIMS = {
    **_CASE_DIMS, "area": "t.area_code", "station": "t.station", "team": "coalesce(t.team_id, c.team_id)::text",
}  # fmt: skip
_WARNING_DIMS = {
    **_CASE_DIMS, "area": "w.area_code", "station": "w.station",
    "fraud_type": "coalesce(c.fraud_type, w.fraud_type)", "source": "coalesce(c.source, w.source)",
}  # fmt: skip


def _dims(group_by: Sequence[str], table: dict[str, str], time_column: str) -> list[str]:
    return [_PERIOD_FORMAT[name].format(t=time_column) if name in _PERIOD_FORMAT else table[name] for name in group_by]


def _select_and_group(dims: list[str]) -> tuple[str, str]:
    select = "".join(f"{expr} AS g{i}, " for i, expr in enumerate(dims))
    group = ("GROUP BY " + ", ".join(f"g{i}" for i in range(len(dims)))) if dims else ""
    return select, group


# One row per case: the outcomes are summed into the case's row as they are recorded (cases/repository.py).
_CASES = """
SELECT {select}
       count(*) AS cases,
       count(*) FILTER (WHERE c.calls > 0) AS call_cases,
       count(*) FILTER (WHERE c.connected_calls > 0) AS connected_cases,
       coalesce(sum(c.calls), 0) AS calls,
       coalesce(sum(c.connected_calls), 0) AS connected_calls,
       coalesce(sum(c.visits), 0) AS visits,
       coalesce(sum(c.visits_met), 0) AS visits_met,
       coalesce(sum(c.visits_judged), 0) AS visits_judged,
       coalesce(sum(c.visits_dissuaded), 0) AS visits_dissuaded,
       coalesce(sum(c.visits_checked), 0) AS visits_checked,
       coalesce(sum(c.visits_app_installed), 0) AS visits_app_installed,
       count(*) FILTER (WHERE c.closure IS NOT NULL AND c.closure <> 'false_positive') AS closed_judged,
       count(*) FILTER (WHERE c.closure = 'dissuaded') AS closed_dissuaded,
       {contact}
  FROM feedback.cases c
 WHERE c.received_at >= :start AND c.received_at < :end
 {group}
"""
_CONTACT_COLUMNS = {"sms": "c.first_sms_at", "call": "c.first_call_at", "visit": "c.first_visit_at"}


def _contact() -> str:
    parts = []
    for tier, column in _CONTACT_COLUMNS.items():
        seconds = f"extract(epoch FROM {column} - c.received_at)"
        parts += [
            f"count({column}) AS ttfc_{tier}_count",
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {seconds}) AS ttfc_{tier}_p50",
            f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {seconds}) AS ttfc_{tier}_p90",
        ]
    return ",\n       ".join(parts)


# SLA compliance: of the tasks due in the window that were decided (done, or declared overdue), those done by
# their deadline. A task cancelled before its deadline (the case closed) was never due and is not counted.
_SLA = """
SELECT {select} t.tier AS tier,
       count(*) FILTER (WHERE t.completed_at IS NOT NULL OR t.breached_at IS NOT NULL) AS due,
       count(*) FILTER (WHERE t.completed_at <= t.due_at AND t.breached_at IS NULL) AS met
  FROM feedback.tasks t {join}
 WHERE t.due_at >= :start AND t.due_at < :end
 GROUP BY {group_columns}
"""

# 预警后发案: warned subjects, and those of them with a crime report matched within the window after a warning.
_POST_WARNING = """
SELECT {select}
       count(DISTINCT w.subject_key) AS warned_subjects,
       count(DISTINCT w.subject_key) FILTER (WHERE w.matched) AS post_warning_subjects
  FROM feedback.warnings w {join}
 WHERE w.received_at >= :start AND w.received_at < :end AND w.subject_key IS NOT NULL
 {group}
"""
#: Groupings a task or a warning cannot answer from its own row.
_NEEDS_CASE = {"street", "fraud_type", "source", "team"}
_CASE_JOIN = "LEFT JOIN feedback.cases c ON c.case_id = {alias}.case_id"

Row = dict[str, Any]


async def _rows(session: AsyncSession, sql: str, params: dict[str, Any]) -> list[Row]:
    used = {name: value for name, value in params.items() if f":{name}" in sql}
    result = await (await session.connection()).execute(text(sql).bindparams(**used))
    return [dict(row._mapping) for row in result]


async def case_counts(
    session: AsyncSession, group_by: Sequence[str], start: datetime, end: datetime, tz: str
) -> list[Row]:
    select, group = _select_and_group(_dims(group_by, _CASE_DIMS, "c.received_at"))
    sql = _CASES.format(select=select, group=group, contact=_contact())
    return await _rows(session, sql, {"start": start, "end": end, "tz": tz})


async def sla_counts(
    session: AsyncSession, group_by: Sequence[str], start: datetime, end: datetime, tz: str
) -> list[Row]:
    dims = _dims(group_by, _TASK_DIMS, "t.due_at")
    select, _ = _select_and_group(dims)
    group_columns = ", ".join([*(f"g{i}" for i in range(len(dims))), "tier"])
    sql = _SLA.format(select=select, group_columns=group_columns, join=_join(group_by, "t"))
    return await _rows(session, sql, {"start": start, "end": end, "tz": tz})


async def post_warning_counts(
    session: AsyncSession, group_by: Sequence[str], start: datetime, end: datetime, tz: str
) -> list[Row]:
    select, group = _select_and_group(_dims(group_by, _WARNING_DIMS, "w.received_at"))
    sql = _POST_WARNING.format(select=select, group=group, join=_join(group_by, "w"))
    return await _rows(session, sql, {"start": start, "end": end, "tz": tz})


def _join(group_by: Sequence[str], alias: str) -> str:
    return _CASE_JOIN.format(alias=alias) if _NEEDS_CASE & set(group_by) else ""


async def areas(session: AsyncSession) -> dict[str, Row]:
    rows = await _rows(session, "SELECT area_code, area_name, station, street FROM feedback.areas", {})
    return {row["area_code"]: row for row in rows}


async def tune(session: AsyncSession) -> None:
    """For the rates transaction only. Row-level security's predicates make the planner expect a few rows where a
    month holds hundreds of thousands: room to sort and hash them in memory, and a plan made for this window's
    dates rather than the generic plan a pooled connection's cached statement switches to after five runs."""
    conn = await session.connection()
    await conn.execute(text("SET LOCAL work_mem = '64MB'"))
    await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
