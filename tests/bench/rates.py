"""Rates at district scale: a year of a district's cases in feedback's read model, and the rates queries timed.

A private PostgreSQL is started in a temporary directory under .quanzu/bench-pg (deleted at the end), the real
migrations are applied, and a district-shaped data set is generated server-side (`INSERT ... SELECT` over
`generate_series`, as the superuser, with the secondary indexes dropped during the load and rebuilt from their
own definitions afterwards; the summaries the service maintains are backfilled with its own statements), then
clustered in time order, vacuumed and analysed. The queries then run exactly as the service runs them:
`services.feedback.stats.service` on a session of the service's role (`quanzu_feedback_app`, row-level security
forced) in a REPEATABLE READ transaction with the caller's scope set, as `GET /v1/stats/rates` and
`GET /v1/reports/monthly` do. Each query runs once to warm up, then `runs` times (fewer once `budget` seconds
are spent on it), each run on a new connection; the table reports the median and the 95th percentile (nearest
rank, which for five runs is the slowest run). A last row runs the main query repeatedly on one connection, to
show what a cached prepared statement (and PostgreSQL's generic plan for it) does to the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.cases.repository import BACKFILL_SUMMARIES
from services.feedback.stats import policy, service
from shared import migrate, scope
from shared.auth import Principal
from shared.db import SessionFactory, asyncpg_dsn, exception_chain, make_engine, make_session_factory
from shared.deps import scoped_session
from shared.devinfra import ensure_database, start_postgres
from shared.events import FRAUD_TYPES

NAME = "rates"
TITLE = "Rates at district scale"
DEFAULT_CASES = 1_000_000
BENCH_HOME = Path(".quanzu") / "bench-pg"

ZONE = ZoneInfo("Asia/Shanghai")
YEAR = 2025
DISTRICT = "370202"  # Qingdao, Shinan district
AREA_COUNT = 148
STREETS = [
    "八大峡街道", "云南路街道", "中山路街道", "珠海路街道", "八大关街道", "湛山街道", "香港中路街道", "金门路街道",
    "八大湖街道", "金湖路街道", "江苏路街道",
]  # fmt: skip
STATIONS = [
    "八大峡派出所", "云南路派出所", "中山路派出所", "珠海路派出所", "八大关派出所", "湛山派出所", "香港中路派出所",
    "金门路派出所", "八大湖派出所", "金湖路派出所", "江苏路派出所", "浮山所派出所", "太平角派出所", "燕儿岛派出所",
    "栈桥派出所",
]  # fmt: skip
# Weighted by repetition: the 96110 centre sends most warnings.
SOURCES = ["96110-centre"] * 4 + ["bank-icbc", "bank-ccb", "telecom-mobile", "telecom-unicom", "police-app"]
FRAUD_TYPE_WEIGHTS = {
    "task_rebate": 5, "investment": 3, "loan": 2, "customer_service": 3, "impersonate_officials": 2,
    "impersonate_acquaintance": 1, "romance": 1, "game_trade": 1, "other": 2,
}  # fmt: skip
assert set(FRAUD_TYPE_WEIGHTS) == set(FRAUD_TYPES)
UNASSIGNED = 0.004  # share of cases whose area is not known

# The tasks dispatch creates per risk level (its default policy: low risk is SMS only), as
# (risk, slot, tier, attempt, created seconds after the case opened, seconds allowed). 3.01 tasks per case.
RISK_SHARES = {"low": 0.23, "medium": 0.41, "high": 0.25, "critical": 0.11}
TASK_PLAN = [
    ("low", 1, "sms", 1, 1, 60),
    ("medium", 1, "sms", 1, 1, 60), ("medium", 2, "call", 1, 2, 600), ("medium", 3, "call", 2, 900, 600),
    ("high", 1, "sms", 1, 1, 60), ("high", 2, "call", 1, 2, 300), ("high", 3, "visit", 1, 5, 3600),
    ("high", 4, "follow_up", 1, 86400, 86400),
    ("critical", 1, "sms", 1, 1, 60), ("critical", 2, "call", 1, 2, 180), ("critical", 3, "call", 2, 600, 300),
    ("critical", 4, "visit", 1, 5, 1800), ("critical", 5, "follow_up", 1, 86400, 86400),
]  # fmt: skip
CLUSTERED = (
    ("cases", "ix_feedback_cases_received_at"),
    ("tasks", "ix_feedback_tasks_due_at"),
    ("warnings", "ix_feedback_warnings_received_at"),
)
LOADED_TABLES = ("cases", "warnings", "tasks", "outcomes", "fraud_reports", "post_warning_matches")
SIZE_TABLES = ("areas", *LOADED_TABLES)

MAIN_MONTH = policy.Month(YEAR, 11)
BULLETIN_MONTH = policy.Month(YEAR, 12)
SUPERVISED_STATION = STATIONS[0]  # the busiest: areas are drawn with a skew towards the low codes


# --- the data set -----------------------------------------------------------------------------------------


def _text_array(values: Sequence[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


def _weighted(weights: dict[str, int]) -> list[str]:
    return [name for name, weight in weights.items() for _ in range(weight)]


def _thresholds() -> list[float]:
    total, out = 0.0, []
    for share in RISK_SHARES.values():
        total += share
        out.append(round(total, 6))
    return out


def _load_statements(cases: int) -> list[tuple[str, str]]:
    """(step, SQL) in order; every value is generated server-side from `random()` after `setseed`."""
    start = f"TIMESTAMPTZ '{YEAR}-01-01 00:00:00+08'"
    span = f"EXTRACT(epoch FROM TIMESTAMPTZ '{YEAR + 1}-01-01 00:00:00+08' - {start})"
    low, medium, high, _ = _thresholds()
    fraud_types = _weighted(FRAUD_TYPE_WEIGHTS)
    area_code = f"'{DISTRICT}-' || lpad(a::text, 3, '0')"
    station = f"({_text_array(STATIONS)})[1 + (a - 1) * {len(STATIONS)} / {AREA_COUNT}]"
    street = f"({_text_array(STREETS)})[1 + (a - 1) * {len(STREETS)} / {AREA_COUNT}]"
    plan = ", ".join(f"('{r}', {n}, '{t}', {att}, {off}, {within})" for r, n, t, att, off, within in TASK_PLAN)
    not_connected = _text_array(
        ["no_answer"] * 3 + ["busy", "powered_off", "powered_off", "invalid_number", "rejected"]
    )
    return [
        ("seed", "SELECT setseed(0.2025)"),
        (
            "areas",
            f"""
            INSERT INTO feedback.areas (area_code, area_name, station, street, active, updated_at)
            SELECT {area_code}, {street} || '第' || a || '社区', {station}, {street}, true, {start}
              FROM generate_series(1, {AREA_COUNT}) AS a
            """,
        ),
        (
            "cases (staging)",
            f"""
            CREATE TEMP TABLE bench_case AS
            WITH r AS MATERIALIZED (
                SELECT i, random() AS r_time, random() AS r_open, random() AS r_area, random() AS r_source,
                       random() AS r_type, random() AS r_risk, random() AS r_close, random() AS r_closed_after,
                       random() AS r_team, random() AS r_repeat, random() AS r_earlier, random() AS r_phone,
                       random() AS r_id, random() AS r_report, random() AS r_report_after
                  FROM generate_series(1, {cases}) AS i
            ), x AS (
                SELECT r.*,
                       CASE WHEN r_area >= {UNASSIGNED} THEN least({AREA_COUNT}, 1 + floor(
                           {AREA_COUNT} * power((r_area - {UNASSIGNED}) / (1 - {UNASSIGNED}), 1.35))::int) END AS a,
                       CASE WHEN r_risk < {low} THEN 'low' WHEN r_risk < {medium} THEN 'medium'
                            WHEN r_risk < {high} THEN 'high' ELSE 'critical' END AS risk,
                       {start} + make_interval(secs => {span} * ((i - 1) + r_time) / {cases}) AS received_at,
                       -- one warning in eight is about someone warned before
                       CASE WHEN r_repeat < 0.12 AND i > 1 THEN 1 + floor(r_earlier * (i - 1))::int ELSE i END
                           AS subject
                  FROM r
            ), y AS (
                SELECT x.*,
                       CASE WHEN risk = 'low' THEN CASE WHEN r_close < 0.92 THEN 'sms_only' END
                            WHEN risk = 'medium' THEN CASE
                                WHEN r_close < 0.48 THEN 'dissuaded' WHEN r_close < 0.56 THEN 'not_dissuaded'
                                WHEN r_close < 0.58 THEN 'already_defrauded' WHEN r_close < 0.70 THEN 'false_positive'
                                WHEN r_close < 0.88 THEN 'unreachable' END
                            ELSE CASE
                                WHEN r_close < 0.58 THEN 'dissuaded' WHEN r_close < 0.66 THEN 'not_dissuaded'
                                WHEN r_close < 0.69 THEN 'already_defrauded' WHEN r_close < 0.79 THEN 'false_positive'
                                WHEN r_close < 0.88 THEN 'unreachable' END
                       END AS closure,
                       CASE WHEN r_phone < 0.95 THEN md5('phone:' || subject) END AS phone_key,
                       CASE WHEN r_id < 0.45 OR r_phone >= 0.95 THEN md5('id:' || subject) END AS id_key
                  FROM x
            )
            SELECT i, md5('case:' || i)::uuid AS case_id, md5('warning:' || i)::uuid AS warning_id, received_at,
                   received_at + make_interval(secs => 1 + 29 * r_open) AS opened_at,
                   {area_code} AS area_code, {station} AS station, {street} AS street,
                   CASE WHEN a IS NOT NULL AND r_team >= 0.03 THEN md5('team:' || a)::uuid END AS team_id,
                   ({_text_array(SOURCES)})[1 + floor(r_source * {len(SOURCES)})::int] AS source,
                   ({_text_array(fraud_types)})[1 + floor(r_type * {len(fraud_types)})::int] AS fraud_type,
                   risk, closure,
                   CASE WHEN closure IS NOT NULL
                        THEN received_at + make_interval(secs => 600 + 259200 * r_closed_after ^ 2) END AS closed_at,
                   phone_key, id_key, coalesce(phone_key, id_key) AS subject_key,
                   -- 预警后发案: the subject reports a fraud later, much more often when not dissuaded
                   CASE WHEN r_report < CASE closure WHEN 'already_defrauded' THEN 0.5 WHEN 'not_dissuaded' THEN 0.15
                                                     WHEN 'unreachable' THEN 0.05 ELSE 0.004 END
                        THEN received_at + make_interval(secs => 3600 + 60 * 86400 * r_report_after) END
                       AS reported_at
              FROM y
            """,
        ),
        ("cases (staging)", "ANALYZE bench_case"),
        (
            "cases",
            """
            INSERT INTO feedback.cases (case_id, warning_id, received_at, opened_at, area_code, station, street,
                                        team_id, source, fraud_type, risk_level, closure, closed_at)
            SELECT case_id, warning_id, received_at, opened_at, area_code, station, street, team_id, source,
                   fraud_type, risk, closure, closed_at
              FROM bench_case
            """,
        ),
        (
            "warnings",
            """
            INSERT INTO feedback.warnings (warning_id, case_id, received_at, subject_key, phone_key, id_key, source,
                                           fraud_type, area_code, station)
            SELECT warning_id, case_id, received_at, subject_key, phone_key, id_key, source, fraud_type, area_code,
                   station
              FROM bench_case
            """,
        ),
        (
            "tasks (staging)",
            f"""
            CREATE TEMP TABLE bench_task AS
            WITH t AS MATERIALIZED (
                SELECT c.i, p.n, c.case_id, c.area_code, c.station, c.team_id, c.risk, c.closure, p.tier, p.attempt,
                       c.opened_at + make_interval(secs => p.offset_s) AS created_at, p.within_s,
                       random() AS r_done, random() AS r_late, random() AS r_breach, random() AS r_result,
                       random() AS r_pick, random() AS r_extra
                  FROM bench_case c
                 CROSS JOIN LATERAL (
                     SELECT * FROM (VALUES {plan}) AS p(risk, n, tier, attempt, offset_s, within_s)
                      WHERE p.risk = c.risk
                 ) p
            )
            SELECT t.*, md5('task:' || i || ':' || n)::uuid AS task_id,
                   created_at + make_interval(secs => within_s) AS due_at,
                   r_done < CASE tier WHEN 'sms' THEN 0.97 WHEN 'call' THEN 0.93 WHEN 'visit' THEN 0.90 ELSE 0.80 END
                       AS done,
                   created_at + make_interval(secs => CASE WHEN tier = 'sms' THEN 2 + 30 * r_late
                                                           ELSE within_s * 1.25 * r_late END) AS done_at,
                   tier <> 'sms' AND r_late > 0.8 AS late
              FROM t
            """,
        ),
        (
            "tasks",
            """
            INSERT INTO feedback.tasks (task_id, case_id, tier, attempt, area_code, station, team_id, created_at,
                                        due_at, sms_at, breached_at)
            SELECT task_id, case_id, tier, attempt, area_code, station, team_id, created_at, due_at,
                   CASE WHEN tier = 'sms' AND done THEN done_at END,
                   CASE WHEN (done AND late) OR (NOT done AND r_breach < 0.7) THEN due_at END
              FROM bench_task
            """,
        ),
        (
            "outcomes",
            f"""
            INSERT INTO feedback.outcomes (id, task_id, case_id, area_code, kind, call_result, dissuasion_result,
                                           loss_prevented, note, checklist, position, recorded_at, recorded_by,
                                           created_at, corrects, correction_reason)
            SELECT md5('outcome:' || i || ':' || n)::uuid, task_id, case_id, area_code, tier, call_result,
                   dissuasion_result,
                   CASE WHEN tier = 'visit' AND dissuasion_result = 'dissuaded' AND r_extra < 0.3
                        THEN round(2000 + 98000 * r_result) END,
                   CASE WHEN r_extra > 0.95 THEN '家属在场,已当面劝阻' END,
                   -- the ORM writes JSON null, not SQL NULL, for an absent checklist or position
                   CASE WHEN tier = 'visit' AND dissuasion_result <> 'not_met' AND r_extra < 0.75 THEN
                       jsonb_build_object(
                           'checked_call_log', r_extra < 0.70, 'checked_sms', r_extra < 0.68,
                           'checked_apps', r_extra < 0.60, 'checked_transfers', r_extra < 0.50,
                           'asked_stranger_contact', r_extra < 0.72, 'asked_money_sent', r_extra < 0.71,
                           'asked_codes_shared', r_extra < 0.65, 'antifraud_app_installed', r_result < 0.55)
                       ELSE 'null'::jsonb
                   END,
                   CASE WHEN tier = 'visit' AND r_result < 0.9 THEN
                       jsonb_build_object('lat', round((36.05 + 0.05 * r_extra)::numeric, 5),
                                          'lon', round((120.32 + 0.10 * r_pick)::numeric, 5))
                       ELSE 'null'::jsonb
                   END,
                   done_at, 'member-' || (1 + floor(r_extra * 400))::int, done_at + interval '2 seconds',
                   CASE WHEN corrected THEN md5('outcome-replaced:' || i || ':' || n)::uuid END,
                   CASE WHEN corrected THEN '录入有误,更正走访结果' END
              FROM (
                SELECT t.*, tier = 'visit' AND r_done < 0.009 AS corrected,
                       CASE WHEN tier = 'call' THEN
                           CASE WHEN closure IS DISTINCT FROM 'unreachable'
                                     AND r_result < CASE WHEN attempt = 1 THEN 0.68 ELSE 0.8 END THEN 'connected'
                                ELSE ({not_connected})[1 + floor(r_pick * 8)::int] END
                       END AS call_result,
                       CASE tier
                           WHEN 'call' THEN
                               CASE WHEN risk = 'medium' AND closure IS DISTINCT FROM 'unreachable'
                                         AND r_result < CASE WHEN attempt = 1 THEN 0.68 ELSE 0.8 END
                                         AND closure IN ('dissuaded', 'not_dissuaded', 'already_defrauded')
                                    THEN closure END
                           WHEN 'visit' THEN
                               CASE WHEN r_pick < 0.08 THEN 'not_met'
                                    WHEN closure IN ('dissuaded', 'not_dissuaded', 'already_defrauded',
                                                     'false_positive') THEN closure
                                    WHEN closure = 'unreachable' THEN 'not_met'
                                    WHEN r_pick < 0.6 THEN 'dissuaded' ELSE 'not_met' END
                           ELSE CASE WHEN r_pick < 0.7 THEN 'dissuaded' WHEN r_pick < 0.9 THEN 'not_met'
                                     ELSE 'not_dissuaded' END
                       END AS dissuasion_result
                  FROM bench_task t
                 WHERE tier <> 'sms' AND done
              ) o
            """,
        ),
        (
            "outcomes",
            # the outcomes that were corrected: kept, superseded by the correction
            """
            INSERT INTO feedback.outcomes (id, task_id, case_id, area_code, kind, dissuasion_result, checklist,
                                           position, recorded_at, recorded_by, created_at, superseded_by,
                                           superseded_at)
            SELECT md5('outcome-replaced:' || i || ':' || n)::uuid, task_id, case_id, area_code, 'visit', 'not_met',
                   'null'::jsonb, 'null'::jsonb,
                   done_at - interval '10 minutes', 'member-' || (1 + floor(r_extra * 400))::int,
                   done_at - interval '10 minutes', md5('outcome:' || i || ':' || n)::uuid, done_at
              FROM bench_task
             WHERE tier = 'visit' AND done AND r_done < 0.009
            """,
        ),
        (
            "crime reports",
            """
            INSERT INTO feedback.fraud_reports (id, feed, external_id, reported_at, phone_key, id_key, loss,
                                                fraud_type, content_hash, received_at)
            SELECT md5('report:' || i)::uuid, 'bench-feed', 'R' || i, reported_at, phone_key, id_key,
                   round(500 + 200000 * random()), fraud_type, md5('content:' || i), reported_at + interval '1 hour'
              FROM bench_case
             WHERE reported_at IS NOT NULL
            """,
        ),
        (
            "crime reports",
            # reports on people who were never warned
            f"""
            INSERT INTO feedback.fraud_reports (id, feed, external_id, reported_at, phone_key, id_key, loss,
                                                fraud_type, content_hash, received_at)
            SELECT md5('unwarned-report:' || k)::uuid, 'bench-feed', 'U' || k, at, md5('unwarned-phone:' || k),
                   NULL, round(500 + 200000 * random()), NULL, md5('unwarned-content:' || k), at + interval '1 hour'
              FROM (SELECT k, {start} + make_interval(secs => {span} * random()) AS at
                      FROM generate_series(1, {max(cases // 50, 1)}) AS k) r
            """,
        ),
        (
            "crime reports",
            """
            INSERT INTO feedback.post_warning_matches (warning_id, report_id, matched_at)
            SELECT warning_id, md5('report:' || i)::uuid, reported_at + interval '1 hour'
              FROM bench_case
             WHERE reported_at IS NOT NULL
            """,
        ),
    ]


_INDEXES = """
SELECT t.relname AS tbl, i.relname AS idx, pg_get_indexdef(x.indexrelid) AS indexdef,
       con.conname AS conname, pg_get_constraintdef(con.oid) AS condef
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.contype IN ('p', 'u')
 WHERE n.nspname = 'feedback' AND t.relname = ANY($1::text[])
 ORDER BY t.relname, i.relname
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Load:
    cases: int
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    tables: list[tuple[str, int, int, int]] = field(default_factory=list)  # name, rows, heap bytes, index bytes


async def load(database_url: str, cases: int) -> Load:
    """Fill feedback's tables as the superuser (row-level security does not apply to it): the indexes are
    dropped, the rows generated, the indexes rebuilt from the definitions the migrations gave them, and the
    tables vacuumed and analysed, as a database that has been running for a year would be."""
    result = Load(cases)
    conn = await asyncpg.connect(asyncpg_dsn(database_url), command_timeout=None)
    started = time.perf_counter()

    async def step(name: str, sql: str, *args: Any) -> None:
        t0 = time.perf_counter()
        await conn.execute(sql, *args)
        result.steps[name] = result.steps.get(name, 0.0) + time.perf_counter() - t0

    try:
        for sql in ("SET temp_buffers = '1GB'", "SET work_mem = '256MB'", "SET maintenance_work_mem = '1GB'"):
            await conn.execute(sql)
        indexes = await conn.fetch(_INDEXES, list(LOADED_TABLES))
        for row in indexes:
            if row["conname"]:
                sql = f"ALTER TABLE feedback.{_ident(row['tbl'])} DROP CONSTRAINT {_ident(row['conname'])}"
            else:
                sql = f"DROP INDEX feedback.{_ident(row['idx'])}"
            await step("indexes", sql)
        for name, sql in _load_statements(cases):
            await step(name, sql)
        for sql in BACKFILL_SUMMARIES:  # what the service keeps as outcomes arrive, computed here in bulk
            await step("summaries", sql)
        for row in indexes:
            if row["conname"]:
                sql = (
                    f"ALTER TABLE feedback.{_ident(row['tbl'])} ADD CONSTRAINT {_ident(row['conname'])} {row['condef']}"
                )
            else:
                sql = row["indexdef"]
            await step("indexes", sql)
        rebuilt = await conn.fetch(_INDEXES, list(LOADED_TABLES))
        if [tuple(r) for r in rebuilt] != [tuple(r) for r in indexes]:
            raise RuntimeError("the rebuilt indexes differ from the migrated schema's")
        await step("staging", "DROP TABLE bench_task, bench_case")
        # A running system writes rows in arrival order, and its summary updates land near the row they replace
        # (the case is days old when its outcomes come). The bulk recount above rewrote every row at the end of
        # the table instead; putting the rows back in time order undoes that artefact of loading in bulk.
        for table, index in CLUSTERED:
            await step("cluster", f"CLUSTER feedback.{table} USING {index}")
        tables = ", ".join(f"feedback.{t}" for t in SIZE_TABLES)
        await step("vacuum, analyze", f"VACUUM (ANALYZE) {tables}")
        await step("vacuum, analyze", "CHECKPOINT")  # so no checkpoint of the load runs during the timings
        result.seconds = time.perf_counter() - started
        for table in SIZE_TABLES:
            rows = await conn.fetchval(f"SELECT count(*) FROM feedback.{table}")
            heap, index = await conn.fetchrow(
                "SELECT pg_table_size(c.oid), pg_indexes_size(c.oid) FROM pg_class c "
                "WHERE c.oid = ('feedback.' || $1)::regclass",
                table,
            )
            result.tables.append((table, int(rows), int(heap), int(index)))
    finally:
        await conn.close()
    return result


# --- the queries ------------------------------------------------------------------------------------------

QueryFn = Callable[[AsyncSession], Awaitable[int]]


def _rates(group_by: Sequence[str], start: datetime, end: datetime) -> QueryFn:
    async def query(session: AsyncSession) -> int:
        return len((await service.rates(session, group_by, start, end, ZONE))["groups"])

    return query


def _bulletin(month: policy.Month) -> QueryFn:
    async def query(session: AsyncSession) -> int:
        bulletin = await service.monthly(session, month, ZONE)
        return len(bulletin["areas"]) + len(bulletin["streets"])

    return query


def queries() -> list[tuple[str, QueryFn]]:
    month_start, month_end = MAIN_MONTH.window(ZONE)
    year_start, year_end = policy.Month(YEAR, 1).window(ZONE)[0], policy.Month(YEAR + 1, 1).window(ZONE)[0]
    return [
        (f"rates by area, one month ({MAIN_MONTH})", _rates(("area",), month_start, month_end)),
        (f"rates, no grouping, one month ({MAIN_MONTH})", _rates((), month_start, month_end)),
        (f"rates by area and week, one month ({MAIN_MONTH})", _rates(("area", "week"), month_start, month_end)),
        (f"rates by area, whole year ({YEAR})", _rates(("area",), year_start, year_end)),
        (f"monthly bulletin ({BULLETIN_MONTH}: 4 rates calls)", _bulletin(BULLETIN_MONTH)),
    ]


def scopes() -> list[tuple[str, dict[str, str]]]:
    admin = Principal(member_id=uuid.UUID(int=1), username="bench-admin", role="admin", epoch=0)
    supervisor = Principal(
        member_id=uuid.UUID(int=2), username="bench-supervisor", role="supervisor", epoch=0, station=SUPERVISED_STATION
    )
    return [("admin", scope.principal_settings(admin)), ("supervisor", scope.principal_settings(supervisor))]


@dataclass
class Timing:
    query: str
    scope: str
    rows: int | None
    seconds: list[float]  # math.inf for a run that hit the driver's command timeout

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1000


def _is_timeout(exc: BaseException) -> bool:
    return any(isinstance(err, TimeoutError) for err in exception_chain(exc))


def _request(factory: SessionFactory, settings: dict[str, str]) -> AsyncGenerator[AsyncSession, None]:
    """The session a rates request gets (`SnapshotSessionDep`): iterate once, then close to commit."""
    return cast(AsyncGenerator[AsyncSession, None], scoped_session(factory, settings, snapshot=True))


async def _timed(factory: SessionFactory, settings: dict[str, str], query: QueryFn) -> tuple[int | None, float]:
    """One request's worth: a snapshot transaction with the caller's scope, as the API's dependency opens it;
    the time is that of the service call (what the service's rates-query histogram measures). A statement
    that runs past the engine's command timeout (30 s, as in the service) counts as an infinite time."""
    async with contextlib.aclosing(_request(factory, settings)) as sessions:
        async for session in sessions:
            t0 = time.perf_counter()
            try:
                rows = await query(session)
            except Exception as exc:
                if not _is_timeout(exc):
                    raise
                return None, math.inf
            return rows, time.perf_counter() - t0
    raise AssertionError("scoped_session yielded no session")


async def _fresh(
    engine: AsyncEngine, factory: SessionFactory, settings: dict[str, str], query: QueryFn
) -> tuple[int | None, float]:
    """On a new connection: its statements are planned for their parameters (custom plans), as on a pooled
    connection's first five executions of a statement; see `_plan_cache` for what follows them."""
    await engine.dispose()
    return await _timed(factory, settings, query)


async def measure(
    engine: AsyncEngine, factory: SessionFactory, runs: int, budget: float, report: Callable[[Timing], None]
) -> list[Timing]:
    """Each query once to warm up, then `runs` times, or fewer (at least one) once `budget` seconds are spent."""
    timings = []
    for scope_name, settings in scopes():
        for name, query in queries():
            rows, _ = await _fresh(engine, factory, settings, query)
            seconds: list[float] = []
            while len(seconds) < runs and (not seconds or sum(seconds) < budget):
                result, elapsed = await _fresh(engine, factory, settings, query)
                rows = rows if result is None else result
                seconds.append(elapsed)
            timing = Timing(name, scope_name, rows, seconds)
            report(timing)
            timings.append(timing)
    return timings


PLAN_CACHE_EXECUTIONS = 6


async def plan_cache(engine: AsyncEngine, factory: SessionFactory, report: Callable[[Timing], None]) -> Timing:
    """The main query run again and again on one pooled connection, as a busy service runs it: asyncpg keeps
    the prepared statements, and from the sixth execution on PostgreSQL may switch to a generic plan, made
    without the window's dates. The time is that of the sixth execution."""
    name, query = queries()[0]
    scope_name, settings = scopes()[0]
    await engine.dispose()
    rows: int | None = None
    elapsed = 0.0
    for _ in range(PLAN_CACHE_EXECUTIONS):
        rows, elapsed = await _timed(factory, settings, query)
    timing = Timing(f"{name}, run {PLAN_CACHE_EXECUTIONS} on one connection", scope_name, rows, [elapsed])
    report(timing)
    return timing


async def explain(engine: AsyncEngine, factory: SessionFactory) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements the main query runs, in each scope, each on a new
    connection (so planned for its parameters, as the timed runs are)."""
    out = []
    name, query = queries()[0]
    for scope_name, settings in scopes():
        captured: list[tuple[str, Any]] = []

        def capture(*args: Any, captured: list[tuple[str, Any]] = captured) -> None:
            statement, parameters = args[2], args[3]
            if "set_config" not in statement:
                captured.append((statement, parameters))

        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        try:
            await _fresh(engine, factory, settings, query)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", capture)
        for statement, parameters in captured:
            await engine.dispose()
            async with contextlib.aclosing(_request(factory, settings)) as sessions:
                async for session in sessions:
                    conn = await session.connection()
                    result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, tuple(parameters))
                    plan = "\n".join(row[0] for row in result)
            out.append(f"--- {name}, {scope_name} ---\n{statement.strip()}\n{parameters}\n\n{plan}\n")
    return "\n".join(out)


# --- the whole run ----------------------------------------------------------------------------------------

SERVER_SETTINGS = (
    "shared_buffers", "work_mem", "effective_cache_size", "max_parallel_workers_per_gather", "jit",
    "random_page_cost",
)  # fmt: skip


@dataclass
class Result:
    load: Load
    timings: list[Timing]
    plan_cache: Timing
    postgres: str
    settings: dict[str, str]
    runs: int
    budget: float
    explain: str | None = None


async def _prepare(admin_url: str) -> str:
    """The throwaway server may checkpoint less often (the load writes a few GB); queries are not affected."""
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute("ALTER SYSTEM SET max_wal_size = '16GB'")
        await conn.execute("ALTER SYSTEM SET checkpoint_timeout = '1h'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    return await ensure_database(admin_url, "quanzu_bench")


def _progress(t: Timing) -> None:
    rows = "-" if t.rows is None else f"{t.rows:,}"
    print(
        f"  {t.scope:<10} {t.query:<62} {rows:>5} rows  {_ms(t.median_ms):>9} ms median of {len(t.seconds)}",
        flush=True,
    )


async def _bench(database_url: str, cases: int, runs: int, budget: float, with_explain: bool) -> Result:
    print(f"loading {cases:,} cases ...", flush=True)
    loaded = await load(database_url, cases)
    print(f"loaded in {loaded.seconds:.1f} s; timing the queries ...", flush=True)
    engine = make_engine(database_url, pool_size=1, application_name="quanzu-bench", role=scope.app_role("feedback"))
    try:
        factory = make_session_factory(engine)
        async with factory() as session:
            conn = await session.connection()
            postgres = str((await conn.exec_driver_sql("SHOW server_version")).scalar_one())
            settings = {
                name: str((await conn.exec_driver_sql(f"SHOW {name}")).scalar_one()) for name in SERVER_SETTINGS
            }
        timings = await measure(engine, factory, runs, budget, _progress)
        cached = await plan_cache(engine, factory, _progress)
        plans = await explain(engine, factory) if with_explain else None
    finally:
        await engine.dispose()
    return Result(loaded, timings, cached, postgres, settings, runs, budget, plans)


def run(cases: int = DEFAULT_CASES, runs: int = 5, budget: float = 20.0, with_explain: bool = False) -> Result:
    """Start a private PostgreSQL under .quanzu/bench-pg, load, measure, and delete it all again."""
    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="rates-", dir=BENCH_HOME))
    try:
        server, admin_url = start_postgres(workdir / "pgdata")
        try:
            database_url = asyncio.run(_prepare(admin_url))
            migrate.upgrade(database_url, ("feedback",))
            return asyncio.run(_bench(database_url, cases, runs, budget, with_explain))
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            BENCH_HOME.rmdir()  # only if no other run is using it


# --- the report -------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A Markdown table, padded so that it reads as well in a terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right, strict=True))
    return "\n".join([line(headers), rule + "|", *(line(r) for r in rows)])


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def _ms(value: float) -> str:
    return "timeout" if math.isinf(value) else f"{value:,.0f}"


def timings_table(result: Result) -> str:
    rows = [
        [
            t.query,
            t.scope,
            "-" if t.rows is None else f"{t.rows:,}",
            str(len(t.seconds)),
            _ms(t.median_ms),
            _ms(t.p95_ms),
        ]
        for t in [*result.timings, result.plan_cache]
    ]
    return table(
        ["query", "scope", "rows", "runs", "median ms", "p95/max ms"], rows, [False, False, True, True, True, True]
    )


def data_table(result: Result) -> str:
    rows = [[name, f"{n:,}", _mb(heap), _mb(index)] for name, n, heap, index in result.load.tables]
    return table(["table", "rows", "table MB", "indexes MB"], rows, [False, True, True, True])


def load_line(result: Result) -> str:
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.load.steps.items() if seconds >= 0.05)
    return f"Load: {result.load.seconds:.1f} s ({steps})."


def markdown(result: Result) -> str:
    main = result.timings[0]
    settings = ", ".join(f"{k}={v}" for k, v in result.settings.items())
    return "\n\n".join(
        [
            f"**Main figure: rates grouped by area over one month, as a district admin: median "
            f"{_ms(main.median_ms)} ms (slowest of {len(main.seconds)} runs: {_ms(main.p95_ms)} ms), "
            f"{'under' if main.p95_ms < 1000 else 'not under'} one second. On one pooled connection the "
            f"{PLAN_CACHE_EXECUTIONS}th execution of the same query took {_ms(result.plan_cache.p95_ms)}"
            f"{'' if math.isinf(result.plan_cache.p95_ms) else ' ms'} (last row).**",
            f"What: {result.load.cases:,} cases with their warnings, tasks, outcomes and crime reports spread over "
            f"{YEAR} in feedback's read model ({AREA_COUNT} areas, {len(STREETS)} streets, {len(STATIONS)} police "
            "stations; risk levels drive the tasks as dispatch's default policy does, about 3 per case). How: a "
            "private PostgreSQL with the real migrations; rows generated server-side by `INSERT ... SELECT` over "
            "`generate_series`; the per-case outcome summaries and task completion times that the service keeps as "
            "events arrive computed in bulk by its own backfill statements (`BACKFILL_SUMMARIES`); indexes rebuilt "
            "from the migrated definitions; cases, tasks and warnings clustered in time order, as a running system "
            "writes them; then `VACUUM (ANALYZE)` and a checkpoint. "
            "Each query goes through `services.feedback.stats.service` on a session of the service's role "
            "`quanzu_feedback_app` (row-level security forced) in the REPEATABLE READ transaction with the caller's "
            f"scope that the API opens: a district admin, and a supervisor of one station ({SUPERVISED_STATION}, the "
            f"busiest). One warm-up, then up to {result.runs} runs (fewer once {result.budget:.0f} s are spent on a "
            "query); the time is that of the service call. Each run is on a new connection, so PostgreSQL plans the "
            "statements for the run's dates, as it does for a pooled connection's first five executions of a "
            "statement; the last row runs the main query six times on one connection, where asyncpg's cached "
            "prepared statement lets PostgreSQL switch to a generic plan. `timeout`: a statement ran past the "
            "engine's 30 s command timeout (the service's setting), which fails the request. The monthly bulletin is "
            "four `rates` calls (areas and streets for the month, streets for each of the two completed quarters).",
            data_table(result),
            load_line(result),
            timings_table(result),
            f"PostgreSQL {result.postgres}, embedded, stock settings ({settings}).",
        ]
    )


def console(result: Result) -> str:
    parts = [data_table(result), load_line(result), timings_table(result)]
    if result.explain:
        parts.append(result.explain)
    return "\n\n".join(parts)
