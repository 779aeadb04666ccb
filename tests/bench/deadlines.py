"""Deadline lateness: N open cases whose call deadlines all fall due at one moment T, fired by dispatch.

A whole Quanzu runs as real processes (`services.cli.system.LocalSystem`: intake, dispatch, feedback, the SMS
gateway, a tansu broker) on a private PostgreSQL started under .quanzu/bench-pg (deleted at the end), once per
dispatch replica count (1, then 2). The escalation measured is the contract's "a missed deadline is an
`sla.breached` event, and the case escalates": a high-risk case whose call task the station's 96110 operator took
but which has no outcome when its deadline passes gets an `sla.breached` event, a visit task for the area's team
(with its own deadlines and a notification), a `task.escalated` event and a transition to `visiting`.

The cases are made the real way first: the demo district is loaded, one warning per police area (12) is posted to
intake, dispatch opens each case (SMS sent through the gateway, call task created), the station's operator accepts
the call task through the REST API, and feedback builds its read model from the events. The rows dispatch and
feedback wrote for those reference cases are then cloned server-side (`tests.bench.cloning`) up to N cases, in one
transaction, each clone with its own ids, phone number and keyed subject hash, and its timestamps moved so that its
call falls due at T; the references' own call deadlines are moved to T too. Not cloned: published outbox rows and
consumers' inbox rows, the delivery history of the reference cases' past events, which the escalation path never
reads (the relay reads only unpublished rows, through a partial index). T is chosen from the time a sample of the
load took (1%, at least 200 cases per template; cloned, timed and rolled back), so that the load commits shortly
before T. A clone of the first and of the last template is read back and compared column by column with its
template under the mapping. The loaded tables are then vacuumed and a checkpoint taken, before T: a running
system has no bulk load's autovacuum and checkpoint to do while its deadlines fall due.

Measured from the database: lateness = fired_at - due_at per deadline (from the load's commit instead, should it
commit after T: the deadlines reach the engines then); visible lateness = the commit time of the
transaction that made the escalation (track_commit_timestamp) - T, since a batch's effects appear together when it
commits; escalations per second = deadlines fired / (last fired_at - T); the effects, counted and checked for
exactly-once; the time until dispatch's outbox has published every resulting event; each process's peak resident
memory (VmHWM). The deadlines get `wait_s` seconds after T to fire; what had not fired by then is reported as such.
Nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.cli import admin
from services.cli.system import LocalSystem
from shared.db import asyncpg_dsn
from shared.devinfra import start_postgres, wait_for
from shared.timers import TimerEngine
from tests.bench import cloning
from tests.bench.rates import table

NAME = "deadlines"
TITLE = "Deadlines falling due at once"
DEFAULT_DEADLINES = 100_000
DEFAULT_REPLICAS = (1, 2)
DEFAULT_WAIT_S = 45.0  # per replica count: the whole benchmark must stay within about four minutes
BENCH_HOME = Path(".quanzu") / "bench-pg"
DATABASE = "quanzu_bench_deadlines"
GOAL_RATE, GOAL_P99_S = 2000.0, 5.0

# The district default with the acknowledgement window raised from 120 s to 30 min, so that the visits created at
# T do not fall due for acknowledgement while the run is still measuring (their re-notifications would be a second
# wave of escalations inside the figures). Every other duration is the contract's default.
BENCH_POLICY = b'{"ack_within_s": 1800}'
SCHEMAS = ("dispatch", "feedback")
NOT_CLONED = ("dispatch.outbox", "dispatch.inbox", "feedback.inbox")
DUE_KIND = "task.due"
# Dispatch's escalation engine keeps the engine's default; a deadline with this many failed attempts was given up.
GIVEN_UP_AFTER = int(inspect.signature(TimerEngine).parameters["max_attempts"].default)
SAMPLE_SHARE, SAMPLE_MIN = 0.01, 200
# T is this many times the sample's estimate of the load after its start, plus the margin: the whole load runs a
# little slower per row than its sample (larger indexes, checkpoints, ANALYZE at full size). On a busy machine the
# estimate can miss either way; a load that commits after T is measured from its commit (see `Load.start`).
LOAD_SAFETY = 1.3
LOAD_MARGIN_S = 5.0
# VACUUM and CHECKPOINT after the load, before T, take about this share of the load's time on top of it: a running
# system has no bulk load's autovacuum and checkpoint to do while its deadlines fall due.
MAINTENANCE_SHARE = 0.4
DRAIN_WAIT_S = 60.0


# --- the reference cases, made through the real services -----------------------------------------------------


def _warning(area_code: str, n: int, issued_at: datetime) -> dict[str, Any]:
    return {
        "external_id": f"BENCH-DEADLINES-{n:03d}",
        "issued_at": issued_at.isoformat(),
        "subject": {"phone": f"138{n:08d}", "name": "测试", "residency": "unknown"},
        "area_code": area_code,
        "fraud_type": "investment",
        "risk_level": "high",
        "in_progress": False,
        "amount_at_risk": 50000.0,
        "evidence": {"suspect_numbers": [], "accounts": [], "urls": [], "apps": []},
    }


CAUGHT_UP = """
SELECT (SELECT count(*) FROM dispatch.outbox WHERE published_at IS NULL)
     + (SELECT count(*) FROM intake.outbox WHERE published_at IS NULL)
     + (SELECT count(*) FROM dispatch.outbox o WHERE o.topic = 'dispatch.events'
         AND NOT EXISTS (SELECT 1 FROM feedback.inbox i WHERE i.event_id = o.event_id))
     + (SELECT count(*) FROM intake.outbox o
         WHERE NOT EXISTS (SELECT 1 FROM feedback.inbox i WHERE i.event_id = o.event_id)
            OR NOT EXISTS (SELECT 1 FROM dispatch.inbox i WHERE i.event_id = o.event_id))
"""


async def _caught_up(conn: asyncpg.Connection, what: str) -> None:
    """Every event published, and consumed by dispatch and feedback: the reference cases are complete."""

    async def done() -> bool:
        return int(await conn.fetchval(CAUGHT_UP)) == 0

    await wait_for(done, timeout=90, interval=0.1, message=what)


async def make_references(system: LocalSystem, conn: asyncpg.Connection) -> list[uuid.UUID]:
    """One high-risk case per demo area, opened by dispatch from a warning posted to intake, its SMS sent and its
    call task accepted by the station's operator. Returns the case ids."""
    settings = system.settings
    summary = await admin.demo(settings)
    await admin.policy_set(settings, "default", BENCH_POLICY)
    codes = sorted(summary.area_codes)
    if not await admin.wait_until_intake_knows(settings, set(codes), 90):
        raise RuntimeError("intake did not learn the demo areas")
    key = admin.DEMO_SOURCES["demo-bank"]
    async with httpx.AsyncClient(base_url=system.url("intake"), timeout=30) as client:
        body = {"warnings": [_warning(code, n, datetime.now(UTC)) for n, code in enumerate(codes, 1)]}
        response = await client.post("/v1/warnings/batch", json=body, headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        answers = [item["code"] for item in response.json()["results"]]
        if answers != [202] * len(codes):
            raise RuntimeError(f"intake answered {answers}")

    async def sms_sent() -> bool:
        sql = "SELECT count(*) FROM dispatch.tasks WHERE tier = 'sms' AND status = 'done'"
        return int(await conn.fetchval(sql)) == len(codes)

    await wait_for(sms_sent, timeout=90, interval=0.1, message="dispatch to open the cases and send their SMS")
    accepted = 0
    async with httpx.AsyncClient(base_url=system.url("dispatch"), timeout=30) as client:
        for username in (login for login, role, _ in summary.logins if role == "operator"):
            token = await client.post("/v1/auth/token", data={"username": username, "password": admin.DEMO_PASSWORD})
            token.raise_for_status()
            auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
            listed = await client.get("/v1/tasks", params={"tier": "call", "limit": 500}, headers=auth)
            listed.raise_for_status()
            for task in listed.json()["items"]:
                (await client.post(f"/v1/tasks/{task['id']}/accept", headers=auth)).raise_for_status()
                accepted += 1
    if accepted != len(codes):
        raise RuntimeError(f"the operators accepted {accepted} call tasks, not {len(codes)}")
    await _caught_up(conn, "the reference cases' events to be published and consumed")
    return [r["id"] for r in await conn.fetch("SELECT id FROM dispatch.cases ORDER BY area_code")]


async def template_of(conn: asyncpg.Connection, tables: list[cloning.Table], case_id: uuid.UUID) -> cloning.Template:
    """The rows of one reference case; its clones are anchored on its pending call deadline."""
    owned = [
        r[0]
        for r in await conn.fetch(
            """SELECT $1::uuid UNION ALL SELECT id FROM dispatch.tasks WHERE case_id = $1
               UNION ALL SELECT warning_id FROM dispatch.case_warnings WHERE case_id = $1
               UNION ALL SELECT id FROM dispatch.case_transitions WHERE case_id = $1
               UNION ALL SELECT id FROM dispatch.notifications WHERE case_id = $1""",
            case_id,
        )
    ]
    case = await conn.fetchrow(
        "SELECT subject->>'phone' AS phone, subject_key FROM dispatch.cases WHERE id = $1", case_id
    )
    due = await conn.fetchval(
        "SELECT due_at FROM dispatch.deadlines WHERE kind = $1 AND fired_at IS NULL AND ref = ANY($2::uuid[])",
        DUE_KIND,
        owned,
    )
    return await cloning.template(conn, tables, owned, case["phone"], case["subject_key"], due)


# --- the load --------------------------------------------------------------------------------------------------


def clone_phone(g: int) -> str:
    return f"139{g:08d}"


def clone_key(secret: str, phone: str) -> str:
    """`shared.personal.subject_key` of a phone number, as intake computes it."""
    return hmac.new(secret.encode(), f"phone:{phone}".encode(), hashlib.sha256).hexdigest()[:32]


def spread(total: int, parts: int) -> list[int]:
    """`total` clones over `parts` templates, as evenly as whole numbers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclass
class Load:
    cases: int
    rows: int
    seconds: float
    due_at: datetime  # T
    committed_at: datetime  # the load transaction's commit (its commit timestamp)
    outbox_high_water: int  # the last outbox id before T: everything above is what the escalations published
    maintained_at: datetime  # when the VACUUM and CHECKPOINT after the load ended

    @property
    def start(self) -> datetime:
        """What lateness is measured from: T, or the load's commit if that came later (the deadlines, already due,
        reached the engines then)."""
        return max(self.due_at, self.committed_at)

    @property
    def committed_before_due_s(self) -> float:
        return (self.due_at - self.committed_at).total_seconds()


async def _clone_all(
    conn: asyncpg.Connection,
    tables: list[cloning.Table],
    templates: list[cloning.Template],
    counts: list[int],
    first: int,
    due: datetime,
    secret: str,
) -> int:
    rows, g = 0, first
    for template, count in zip(templates, counts, strict=True):
        numbers = list(range(g, g + count))
        g += count
        phones = [clone_phone(n) for n in numbers]
        keys = [clone_key(secret, p) for p in phones]
        rows += await cloning.clone(conn, tables, template, due - template.anchor, numbers, phones, keys)
    return rows


async def load(
    conn: asyncpg.Connection,
    tables: list[cloning.Table],
    references: list[uuid.UUID],
    templates: list[cloning.Template],
    total: int,
    secret: str,
) -> Load:
    """Clone the templates up to `total` cases in one transaction (the engines see nothing before the commit),
    with every pending call deadline, the references' included, due at one moment T."""
    counts = spread(total - len(templates), len(templates))
    started = time.perf_counter()
    async with conn.transaction():
        # at least SAMPLE_MIN per template, or the fixed cost of each statement would dominate the sample's time
        sample = [min(c, max(SAMPLE_MIN, round(c * SAMPLE_SHARE))) for c in counts]
        savepoint = conn.transaction()
        await savepoint.start()
        t0 = time.perf_counter()
        await _clone_all(
            conn, tables, templates, sample, sum(counts) + 1, datetime.now(UTC) + timedelta(days=1), secret
        )
        estimate = (time.perf_counter() - t0) * sum(counts) / max(1, sum(sample))
        await savepoint.rollback()
        due: datetime = await conn.fetchval(
            "SELECT clock_timestamp() + $1::interval",
            timedelta(seconds=LOAD_MARGIN_S + LOAD_SAFETY * (1 + MAINTENANCE_SHARE) * estimate),
        )
        rows = await _clone_all(conn, tables, templates, counts, 1, due, secret)
        for sql in (
            """UPDATE dispatch.deadlines SET due_at = $2 WHERE kind = 'task.due' AND fired_at IS NULL
                AND ref IN (SELECT id FROM dispatch.tasks WHERE case_id = ANY($1::uuid[]) AND tier = 'call')""",
            "UPDATE dispatch.tasks SET due_at = $2 WHERE case_id = ANY($1::uuid[]) AND tier = 'call'",
            "UPDATE feedback.tasks SET due_at = $2 WHERE case_id = ANY($1::uuid[]) AND tier = 'call'",
        ):
            await conn.execute(sql, references, due)
        # A running system's statistics know its tables' sizes; without this the plans would be for 12 cases.
        await conn.execute("ANALYZE " + ", ".join(t.qualified for t in tables))
        high_water = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM dispatch.outbox"))
    committed: datetime = await conn.fetchval(
        "SELECT pg_xact_commit_timestamp(xmin) FROM dispatch.deadlines WHERE due_at = $1 LIMIT 1", due
    )
    await conn.execute("VACUUM " + ", ".join(t.qualified for t in tables))
    await conn.execute("CHECKPOINT")
    maintained: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return Load(total, rows, time.perf_counter() - started, due, committed, high_water, maintained)


async def check_shape(
    conn: asyncpg.Connection, tables: list[cloning.Table], templates: list[cloning.Template], loaded: Load, secret: str
) -> list[str]:
    """The first clone of the first template and the last clone of the last, compared with their templates."""
    counts = spread(loaded.cases - len(templates), len(templates))
    samples = [(templates[0], 1)] if counts[0] else []
    if counts[-1]:
        samples.append((templates[-1], sum(counts)))
    problems = []
    for template, g in samples:
        phone = clone_phone(g)
        shift = loaded.due_at - template.anchor
        problems += await cloning.differences(conn, tables, template, g, shift, phone, clone_key(secret, phone))
    return problems


# --- measuring ------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least a share q of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def summary(values: Sequence[float]) -> dict[str, float]:
    return {name: percentile(values, q) for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))}


def fired_counter(metrics_text: str, kind: str) -> float:
    """quanzu_deadlines_fired_total{kind, result="fired"} from a /metrics page."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "quanzu_deadlines_fired_total" and (labels.get("kind"), labels.get("result")) == (
                kind,
                "fired",
            ):
                return float(sample.value)
    return 0.0


# The run's deadlines: every call task's due deadline (the visits' fall due an hour after T, the SMS tasks' were
# retired when their SMS went out). A retried one has had its due_at moved, so the set is not "due_at = T".
RUN_DEADLINES = (
    "dispatch.deadlines WHERE kind = 'task.due' AND ref IN (SELECT id FROM dispatch.tasks WHERE tier = 'call')"
)

OUTCOME = f"""
SELECT count(*) FILTER (WHERE fired_at IS NOT NULL AND attempts < $2) AS fired,
       count(*) FILTER (WHERE attempts > 0 OR last_error IS NOT NULL) AS retried,
       count(*) FILTER (WHERE attempts >= $2) AS failed,
       extract(epoch FROM min(fired_at) - $1) AS first_s,
       extract(epoch FROM max(fired_at) - $1) AS last_s,
       extract(epoch FROM clock_timestamp() - $1) AS observed_s,
       array_agg(extract(epoch FROM fired_at - $1)) FILTER (WHERE fired_at IS NOT NULL AND attempts < $2) AS lateness
  FROM {RUN_DEADLINES}
"""

EFFECTS = """
WITH visits AS (SELECT case_id, count(*) AS n, min(pg_xact_commit_timestamp(xmin)) AS committed
                  FROM dispatch.tasks WHERE tier = 'visit' GROUP BY case_id),
     events AS (SELECT key, string_agg(event_type, ',' ORDER BY id) AS effect,
                       count(*) FILTER (WHERE event_type = 'sla.breached') AS breached,
                       count(*) FILTER (WHERE event_type = 'task.escalated') AS escalated
                  FROM dispatch.outbox WHERE id > $2 AND topic = 'dispatch.events' GROUP BY key),
     reference AS (SELECT min(effect) AS effect, count(DISTINCT effect) AS kinds FROM events
                    WHERE key = ANY($3::bytea[]))
SELECT (SELECT coalesce(sum(n), 0)::bigint FROM visits) AS visits,
       (SELECT count(*) FROM visits WHERE n = 1) AS escalated_once,
       -- each row's xmin is its savepoint's subtransaction; they share their transaction's commit time
       (SELECT count(DISTINCT committed) FROM visits) AS commits,
       (SELECT array_agg(extract(epoch FROM committed - $1)) FROM visits) AS visible,
       (SELECT coalesce(sum(breached), 0)::bigint FROM events) AS breached_events,
       (SELECT coalesce(sum(escalated), 0)::bigint FROM events) AS escalated_events,
       (SELECT CASE WHEN kinds = 1 THEN effect ELSE 'the reference cases differ' END FROM reference)
           AS reference_effect,
       (SELECT count(*) FROM events, reference WHERE events.effect = reference.effect) AS as_reference
"""


@dataclass
class Run:
    replicas: int
    load: Load
    shape_problems: list[str]
    observed_s: float  # how long after T the figures were read
    fired: int
    lateness: dict[str, float]  # fired_at - T: p50, p90, p99, max; inf for a deadline not fired by observed_s
    visible: dict[str, float]  # the escalation's commit - T, the same way
    first_s: float
    last_s: float
    retried: int  # deadlines whose handler failed at least once (a deadlock included)
    failed: int  # deadlines given up on (and so not escalated)
    commits: int  # transactions the escalations committed in
    visits: int  # visit tasks, all made by the escalations
    escalated_once: int  # cases with exactly one visit
    breached_events: int
    escalated_events: int
    reference_effect: str  # what a reference case published when its deadline fired, in order
    as_reference: int  # cases (references included) that published exactly that
    fired_by: dict[str, float]  # dispatch process -> its engine's fired counter
    drained_s: float | None  # T to the last resulting event published, once every deadline fired
    peak_kib: dict[str, int]

    @property
    def complete(self) -> bool:
        return self.fired == self.load.cases

    @property
    def rate(self) -> float:
        return self.fired / self.last_s if self.last_s > 0 else math.nan


async def _outcome(conn: asyncpg.Connection, loaded: Load, references: list[uuid.UUID]) -> dict[str, Any]:
    """Every figure from one snapshot, so that the effects counted are those of the deadlines counted fired."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        deadlines = await conn.fetchrow(OUTCOME, loaded.start, GIVEN_UP_AFTER)
        effects = await conn.fetchrow(
            EFFECTS, loaded.start, loaded.outbox_high_water, [str(r).encode() for r in references]
        )
    unfired = [math.inf] * (loaded.cases - int(deadlines["fired"]))
    return {
        "fired": int(deadlines["fired"]),
        "retried": int(deadlines["retried"]),
        "failed": int(deadlines["failed"]),
        "first_s": float(deadlines["first_s"] if deadlines["first_s"] is not None else math.nan),
        "last_s": float(deadlines["last_s"] if deadlines["last_s"] is not None else math.nan),
        "observed_s": float(deadlines["observed_s"]),
        "lateness": summary([float(v) for v in deadlines["lateness"] or []] + unfired),
        "visible": summary([float(v) for v in effects["visible"] or []] + unfired),
        **{k: effects[k] for k in ("visits", "escalated_once", "commits", "breached_events", "escalated_events")},
        "reference_effect": effects["reference_effect"] or "-",
        "as_reference": effects["as_reference"],
    }


async def _fired_by(system: LocalSystem) -> dict[str, float]:
    out = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for process in system.processes_of("dispatch"):
            out[process.name] = fired_counter((await client.get(process.url + "/metrics")).text, DUE_KIND)
    return out


def _peak_memory(system: LocalSystem) -> dict[str, int]:
    peaks = {name: system.peak_rss_kib(name) for name in system.processes}
    broker = system.broker.process if system.broker is not None else None
    if broker is not None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{broker.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks["broker (tansu)"] = int(line.split()[1])
    return peaks


async def _poll(predicate: Any, timeout: float, what: str) -> bool:
    try:
        await wait_for(predicate, timeout=max(timeout, 0.0), interval=1.0, message=what)
    except TimeoutError:
        return False
    return True


async def one_run(admin_url: str, home: Path, total: int, replicas: int, wait_s: float) -> Run:
    async with LocalSystem(
        home=home, pg_admin_url=admin_url, database=DATABASE, replicas={"dispatch": replicas}
    ) as system:
        conn = await asyncpg.connect(asyncpg_dsn(system.database_url), command_timeout=None)
        try:
            references = await make_references(system, conn)
            if total < len(references):
                raise ValueError(f"at least {len(references)} deadlines: one reference case per area")
            tables = await cloning.tables(conn, SCHEMAS, NOT_CLONED)
            templates = [await template_of(conn, tables, case) for case in references]
            secret = system.env["QUANZU_SUBJECT_KEY_SECRET"]
            print(f"  {replicas} dispatch replica(s): cloning {total - len(references):,} cases ...", flush=True)
            loaded = await load(conn, tables, references, templates, total, secret)
            print(
                f"  {loaded.rows:,} rows in {loaded.seconds:.1f} s, {_committed(loaded)}; firing (waiting up to "
                f"{wait_s:.0f} s) ...",
                flush=True,
            )
            shape = await check_shape(conn, tables, templates, loaded, secret)
            horizon = loaded.due_at + timedelta(minutes=30)  # before any visit's deadline, after any retry's
            # through the pending index, stopping at the first: the poll must not load the database it measures
            pending = (
                "SELECT EXISTS (SELECT 1 FROM dispatch.deadlines WHERE kind = 'task.due' AND fired_at IS NULL "
                "AND due_at < $1)"
            )

            async def all_fired() -> bool:
                return not await conn.fetchval(pending, horizon)

            until_due = (loaded.start - datetime.now(UTC)).total_seconds()
            complete = await _poll(all_fired, until_due + wait_s, "every deadline to fire")
            drained_s = None
            if complete:

                async def drained() -> bool:
                    return not await conn.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM dispatch.outbox WHERE published_at IS NULL)"
                    )

                if await _poll(drained, DRAIN_WAIT_S, "the outbox to drain"):
                    last = await conn.fetchval(
                        "SELECT extract(epoch FROM max(published_at) - $2) FROM dispatch.outbox WHERE id > $1",
                        loaded.outbox_high_water,
                        loaded.start,
                    )
                    drained_s = None if last is None else float(last)
            outcome = await _outcome(conn, loaded, references)
            fired_by = await _fired_by(system)
        finally:
            await conn.close()
        peaks = _peak_memory(system)
    return Run(
        replicas=replicas, load=loaded, shape_problems=shape, fired_by=fired_by, drained_s=drained_s, peak_kib=peaks,
        **outcome,
    )  # fmt: skip


@dataclass
class Result:
    deadlines: int
    wait_s: float
    runs: list[Run]
    postgres: str


async def _track_commit_timestamps(admin_url: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")  # takes effect at the next start
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def run(
    deadlines: int = DEFAULT_DEADLINES, replicas: Sequence[int] = DEFAULT_REPLICAS, wait_s: float = DEFAULT_WAIT_S
) -> Result:
    """Start a private PostgreSQL under .quanzu/bench-pg, run the whole system once per replica count on it, and
    delete it all again."""
    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    # absolute: the processes run with their home as working directory, and are given paths inside it
    workdir = Path(tempfile.mkdtemp(prefix="deadlines-", dir=BENCH_HOME)).resolve()
    try:
        server, admin_url = start_postgres(workdir / "pgdata")
        try:
            postgres = asyncio.run(_track_commit_timestamps(admin_url))
        finally:
            server.cleanup()  # stops it, keeping the data
        server, admin_url = start_postgres(workdir / "pgdata")
        try:
            runs = [asyncio.run(one_run(admin_url, workdir / f"system-{n}", deadlines, n, wait_s)) for n in replicas]
        finally:
            server.cleanup()
        return Result(deadlines, wait_s, runs, postgres)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            BENCH_HOME.rmdir()  # only if no other run is using it


# --- the report -------------------------------------------------------------------------------------------------


def _s(value: float | None, observed: float, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"> {observed:,.0f}" if math.isinf(value) else f"{value:,.{digits}f}"


def lateness_table(result: Result) -> str:
    rows = []
    for r in result.runs:
        seen = r.observed_s
        rows.append(
            [
                str(r.replicas),
                f"{r.fired:,}" + ("" if r.complete else f" of {r.load.cases:,}"),
                *(_s(r.lateness[p], seen) for p in ("p50", "p90", "p99", "max")),
                *(_s(r.visible[p], seen) for p in ("p50", "p99", "max")),
                _s(r.first_s, seen),
                f"{r.rate:,.0f}",
                f"{r.commits:,}",
                _s(r.drained_s, seen, 1),
                " / ".join(f"{v:,.0f}" for v in r.fired_by.values()),
            ]
        )
    return table(
        ["dispatch replicas", "deadlines fired", "lateness p50 s", "p90 s", "p99 s", "max s", "visible p50 s",
         "visible p99 s", "visible max s", "first fired s", "escalations/s", "commits", "outbox drained s",
         "fired by each replica"],
        rows, [True] * 14,
    )  # fmt: skip


def checks_table(result: Result) -> str:
    rows = [
        [
            str(r.replicas),
            f"{r.fired:,}",
            f"{r.visits:,}",
            f"{r.escalated_once:,}",
            f"{r.breached_events:,}",
            f"{r.escalated_events:,}",
            f"{r.as_reference:,}" if r.reference_effect != "-" else "- (no reference case fired)",
            f"{sum(r.fired_by.values()):,.0f}",
            str(r.retried),
            str(r.failed),
            "ok" if not r.shape_problems else "differs: " + "; ".join(r.shape_problems),
        ]
        for r in result.runs
    ]
    return table(
        ["dispatch replicas", "deadlines fired", "visit tasks", "cases with one visit", "sla.breached",
         "task.escalated", "cases escalated as the references", "engines' fired count", "retried", "failed",
         "shape check"],
        rows, [True] * 10 + [False],
    )  # fmt: skip


def memory_table(result: Result) -> str:
    names = list(dict.fromkeys(name for r in result.runs for name in r.peak_kib))
    rows = [
        [name, *(f"{r.peak_kib[name] / 1024:,.0f}" if name in r.peak_kib else "-" for r in result.runs)]
        for name in names
    ]
    headers = ["process", *(f"peak MiB, {r.replicas} replica{'s' if r.replicas > 1 else ''}" for r in result.runs)]
    return table(headers, rows, [False] + [True] * len(result.runs))


def _committed(loaded: Load) -> str:
    ahead = loaded.committed_before_due_s
    if ahead >= 0:
        committed = f"committed {ahead:.1f} s before T"
    else:
        committed = (
            f"committed {-ahead:.1f} s after T: measured from the commit, when the deadlines reached the engines"
        )
    after = (loaded.maintained_at - loaded.start).total_seconds()
    return f"{committed}; VACUUM and CHECKPOINT ended {abs(after):.1f} s {'after' if after > 0 else 'before'} that"


def load_lines(result: Result) -> str:
    return " ".join(
        f"{r.replicas} replica{'s' if r.replicas > 1 else ''}: {r.load.rows:,} rows cloned in {r.load.seconds:.1f} s, "
        f"{_committed(r.load)}; figures read {r.observed_s:.1f} s after that."
        for r in result.runs
    )


def _verdict(r: Run) -> str:
    met = r.complete and r.rate >= GOAL_RATE and r.lateness["p99"] < GOAL_P99_S
    done = "all fired" if r.complete else f"{r.fired:,} of {r.load.cases:,} fired {r.observed_s:.0f} s after T"
    return (
        f"{r.replicas} replica{'s' if r.replicas > 1 else ''}: {r.rate:,.0f} escalations/s, p99 lateness "
        f"{_s(r.lateness['p99'], r.observed_s)} s ({done}; {'meets' if met else 'misses'} the goal)"
    )


def markdown(result: Result) -> str:
    effect = result.runs[0].reference_effect if result.runs else "-"
    return "\n\n".join(
        [
            f"**{result.deadlines:,} call deadlines falling due at one moment T; goal: at least {GOAL_RATE:,.0f} "
            f"escalations/s and p99 lateness under {GOAL_P99_S:.0f} s. "
            + "; ".join(_verdict(r) for r in result.runs)
            + ".** (With every deadline due at once, p99 lateness under 5 s needs about "
            f"{0.99 * result.deadlines / GOAL_P99_S:,.0f} escalations/s; at 2,000/s it would be about "
            f"{0.99 * result.deadlines / GOAL_RATE:,.0f} s.)",
            "What: a whole Quanzu as real processes (`services.cli.system.LocalSystem`: intake, dispatch, feedback, "
            "the development SMS gateway and a tansu broker) on a private embedded PostgreSQL, run once per dispatch "
            "replica count. Each case is a high-risk warning whose call task the station's operator accepted but which "
            "has no outcome when its deadline passes: the contract's escalation, an `sla.breached` event and a visit "
            f"for the area's team (what a reference case published when its deadline fired: `{effect}`; with a "
            "notification, a timeline entry and the visit's own deadlines). How: the demo district is loaded (12 "
            "police areas, a team each); one warning per area is posted to intake, dispatch opens the case and "
            "sends the SMS through the gateway, the operator accepts the call task through the REST API, and feedback "
            "builds its read model. Every row dispatch and feedback wrote for those 12 cases is then cloned "
            "server-side (`INSERT ... SELECT`, one transaction; `tests/bench/cloning.py`) up to the total, each clone "
            "with its own ids, phone number and keyed subject hash and its timestamps moved so that its call falls "
            "due at T, chosen from a timed sample of the load (1%, at least 200 cases per template) so that the load "
            "commits just before it. A clone of the first and of the last template is read back and compared column "
            "by column with its template (shape check); the loaded tables are then vacuumed and a checkpoint taken "
            "before T, so that no bulk load's autovacuum or checkpoint runs during the measurement. Not cloned: "
            "published outbox rows and consumers' inbox rows (the reference cases' delivery history, which the "
            "escalation path never reads) and intake's rows. The district default policy raises the acknowledgement "
            "window to 30 minutes so that the new visits' acknowledgement deadlines do not fall due during the run; "
            f"every other setting is the contract's default. The deadlines get {result.wait_s:.0f} s after T to "
            "fire (`--deadline-wait`); what has not fired by then counts as later than that.",
            "Lateness is `fired_at − due_at` per deadline from the `deadlines` table (nearest-rank percentiles; if "
            "the load committed after T, from the commit instead, when the deadlines reached the engines: the last "
            "line says); "
            "visible lateness is the commit time of the transaction that made the escalation (PostgreSQL's "
            "`track_commit_timestamp`) minus T: the timer engine commits a batch after 200 deadlines or one second, "
            "whichever comes first, and a batch's effects appear together when it commits. Escalations/s is the "
            "deadlines fired divided by the time from T to the last `fired_at`; commits is the number of transactions "
            "they were made in; outbox drained is T to the last resulting event published (`published_at`: the "
            "relay's batch time), measured once all fired.",
            lateness_table(result),
            "Exactly once, counted from one snapshot of the database after the run: every fired deadline should have "
            "made one visit task, one `sla.breached` and one `task.escalated` event, and its case should have "
            "published exactly what the reference cases published; no deadline retried or failed; the engines' "
            "`quanzu_deadlines_fired_total` counters, summed over the replicas, equal to the deadlines fired (they "
            "are read a moment later, so a run that did not finish may show a few more).",
            checks_table(result),
            "Peak resident memory (VmHWM) of each process over the run:",
            memory_table(result),
            load_lines(result),
            f"PostgreSQL {result.postgres}, embedded, stock settings but for `track_commit_timestamp = on`.",
        ]
    )


def console(result: Result) -> str:
    return "\n\n".join([lateness_table(result), checks_table(result), memory_table(result), load_lines(result)])
