"""Dispatch as real processes (`quanzu serve dispatch`) on a database and a broker of this module's own.

Timers survive restarts and fire once (contract §3): a process killed with SIGKILL while deadlines are pending,
then restarted, fires every one of them exactly once; two processes in the same consumer groups on the same
database open one case per warning, fire each deadline at most once and send each SMS once; an SMS gateway
that fails and then recovers still gets every message exactly once, and the SMS-only cases close `sms_only`.
A failed SMS attempt waits for the timer engine's backoff before the next one (the last test).

The session's in-process dispatch app (the `dispatch` fixture) also consumes warnings and fires deadlines: this
module never uses it, and runs on a fresh database (and a fresh tansu broker per test), so the subprocesses
started here are the only dispatch processes touching its data. Nothing waits by sleeping: every wait polls
the database, the gateway or the processes with a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer

from services.cli import admin
from services.dispatch.main import SMS_BATCH
from services.smsgw.main import create_app as create_gateway
from services.smsgw.settings import SmsGatewaySettings
from shared.db import asyncpg_dsn
from shared.devinfra import Broker, free_port, wait_for
from shared.events import Envelope, SubjectData, Topic, WarningReceivedV1
from shared.kafka import ensure_topics, make_producer
from shared.personal import subject_key
from shared.settings import CommonSettings
from tests.conftest import SUBJECT_SECRET, TOKEN_PRIVATE_KEY, TOKEN_PUBLIC_KEY, migrated_database
from tests.kafka_helpers import read_envelopes

ROOT = Path(__file__).resolve().parents[2]

# Each test has an area of its own; their stations have a backup team in another area.
KILL_AREA, KILL_BACKUP_AREA = "370202-041", "370202-043"  # 湛山派出所
PAIR_AREA, PAIR_BACKUP_AREA = "370202-031", "370202-033"  # 香港路派出所
SMS_AREA = "370202-021"  # 中山路派出所: low risk only, SMS only
FAST_POLICY = (
    b'{"ack_within_s": 1, "visit_arrive_within_s": 3, "call_first_within_s": {"medium": 2, "high": 2, "critical": 2},'
    b' "sms_within_s": 30}'
)
SMS_POLICY = b'{"sms_within_s": 120}'
SMS_DEADLINE_S = 2  # each SMS attempt of a dispatch process gives up after this long
SMS_CONCURRENCY = 4  # SMS senders per dispatch process (each hands over up to SMS_BATCH messages at once)

_numbers = itertools.count(1)


def next_phone() -> str:
    """A distinct mobile number (the database and the gateway are this module's own, so no run sees another's)."""
    return f"1380000{next(_numbers):04d}"


# --- the module's own infrastructure -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def own_database(pg_admin_url: str) -> AsyncIterator[str]:
    async with migrated_database(pg_admin_url, f"quanzu_procs_{os.getpid()}_{uuid.uuid4().hex[:8]}") as url:
        yield url


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A fresh broker per test (memory only, it starts at once), so no test inherits another's consumer groups:
    on tansu 0.6.0, once the two members of a group have both left it, a new member is never made its leader
    and keeps re-joining without partitions (a broker quirk, seen outside Quanzu with bare aiokafka consumers)."""
    with (tmp_path / "tansu.log").open("ab") as log:
        broker = Broker(free_port(), log=log)
        await asyncio.to_thread(broker.start)
        try:
            await ensure_topics(broker.bootstrap)
            yield broker
        finally:
            await asyncio.to_thread(broker.stop)


@pytest.fixture(scope="module")
def own_settings(own_database: str) -> CommonSettings:
    """For `quanzu` admin commands, which use the database only (the processes publish what they enqueue)."""
    return CommonSettings(
        _env_file=None,
        database_url=own_database,
        subject_key_secret=SUBJECT_SECRET,
        token_public_key=TOKEN_PUBLIC_KEY,
    )


@pytest.fixture(scope="module")
async def pool(own_database: str) -> AsyncIterator[Any]:
    """The superuser's view of the database (row-level security does not apply)."""
    pool = await asyncpg.create_pool(asyncpg_dsn(own_database), min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass(frozen=True)
class District:
    backup_team: dict[str, uuid.UUID]  # area code -> the id of its station's backup team


@pytest.fixture(scope="module")
async def district(own_settings: CommonSettings) -> District:
    await admin.areas_import(own_settings, admin.DEMO_AREAS.read_bytes())
    backups: dict[str, uuid.UUID] = {}
    for area, backup_area in ((KILL_AREA, KILL_BACKUP_AREA), (PAIR_AREA, PAIR_BACKUP_AREA)):
        await admin.team_add(own_settings, f"procs-team-{area}", area, backup=False)
        backup = await admin.team_add(own_settings, f"procs-backup-{backup_area}", backup_area, backup=True)
        backups[area] = backup.id
        await admin.policy_set(own_settings, area, FAST_POLICY)
    await admin.policy_set(own_settings, SMS_AREA, SMS_POLICY)
    return District(backups)


@pytest.fixture
async def producer(own_broker: Broker) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(own_broker.bootstrap, client_id="test-intake")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


# --- the SMS gateway, served by uvicorn so that the processes reach it over HTTP ---------------------------------


@dataclass
class Gateway:
    url: str
    client: httpx.AsyncClient

    async def control(self, **settings: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/control", json=settings)
        assert response.status_code == 200, response.text
        state: dict[str, Any] = response.json()
        return state

    async def state(self) -> dict[str, Any]:
        response = await self.client.get("/v1/control")
        assert response.status_code == 200, response.text
        state: dict[str, Any] = response.json()
        return state

    async def messages(self) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/messages", params={"limit": 1000})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        assert len(items) < 1000, "raise the limit: the gateway holds more messages than one page"
        return items


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[Gateway]:
    port = free_port()
    config = uvicorn.Config(
        create_gateway(SmsGatewaySettings()), host="127.0.0.1", port=port, log_level="warning", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def healthy() -> bool:
            if task.done():
                task.result()
                raise RuntimeError("the gateway's server stopped")
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(healthy, timeout=20, message="the SMS gateway to answer /healthz")
        try:
            yield Gateway(url, client)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=30)


# --- dispatch processes -------------------------------------------------------------------------------------------


@dataclass
class DispatchProcess:
    name: str
    proc: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    async def metrics(self) -> dict[tuple[str, str], float]:
        """The process's Prometheus samples, as {(name, labels): value}."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.url}/metrics")
        assert response.status_code == 200, response.text
        samples: dict[tuple[str, str], float] = {}
        for line in response.text.splitlines():
            if not line or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            samples[(name, labels.rstrip("}"))] = float(value)
        return samples

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the broker or the database."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


def _total(samples: dict[tuple[str, str], float], name: str, label: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and label in labels)


class Launcher:
    """Starts `python -m services.cli.main serve dispatch` processes; kills whatever is left at the end."""

    def __init__(self, database_url: str, broker: Broker, gateway: Gateway, home: Path) -> None:
        self.database_url = database_url
        self.broker = broker
        self.gateway = gateway
        self.home = home
        self.started: list[DispatchProcess] = []

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUANZU_")}
        env.update(
            QUANZU_DATABASE_URL=self.database_url,
            QUANZU_KAFKA_BOOTSTRAP_SERVERS=self.broker.bootstrap,
            QUANZU_SUBJECT_KEY_SECRET=SUBJECT_SECRET,
            QUANZU_TOKEN_PUBLIC_KEY=TOKEN_PUBLIC_KEY,
            QUANZU_TOKEN_PRIVATE_KEY=TOKEN_PRIVATE_KEY,
            QUANZU_DISPATCH_HOST="127.0.0.1",
            QUANZU_DISPATCH_PORT=str(port),
            QUANZU_SMS_PROVIDER_URL=self.gateway.url,
            QUANZU_SMS_DEADLINE_S=str(SMS_DEADLINE_S),
            QUANZU_SMS_CONCURRENCY=str(SMS_CONCURRENCY),
            QUANZU_HOME=str(self.home),
        )
        return env

    async def start(self, name: str) -> DispatchProcess:
        port = free_port()
        log_path = self.home / f"{name}-{len(self.started)}.log"
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli.main", "serve", "dispatch",
                env=self.env(port), cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        process = DispatchProcess(name, proc, port, log_path)
        self.started.append(process)
        async with httpx.AsyncClient(timeout=2) as client:

            async def ready() -> bool:
                if proc.returncode is not None:
                    raise RuntimeError(f"dispatch {name} exited with {proc.returncode}:\n{process.log_tail()}")
                try:
                    return (await client.get(f"{process.url}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                await wait_for(ready, timeout=45, interval=0.1, message=f"dispatch {name} to be ready")
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\n{process.log_tail()}") from None
        return process

    async def kill_all(self) -> None:
        await asyncio.gather(*(p.kill() for p in self.started), return_exceptions=True)


@pytest.fixture
async def launcher(
    own_database: str, own_broker: Broker, gateway: Gateway, district: District, tmp_path: Path
) -> AsyncIterator[Launcher]:
    launcher = Launcher(own_database, own_broker, gateway, tmp_path)
    try:
        yield launcher
    finally:
        await launcher.kill_all()
        await gateway.control()  # faults off for whoever comes next


# --- warnings in, and what dispatch made of them -------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    warning_id: uuid.UUID
    phone: str
    risk: str


async def produce(producer: AIOKafkaProducer, area: str, risks: list[str]) -> list[Sent]:
    """`warning.received` envelopes on warnings.received, as intake publishes them, one subject each."""
    sent: list[Sent] = []
    futures = []
    now = datetime.now(UTC)
    for risk in risks:
        phone = next_phone()
        key = subject_key(SUBJECT_SECRET, phone=phone, id_number=None)
        data = WarningReceivedV1(
            warning_id=uuid.uuid4(), source="test-procs", external_id=f"P-{uuid.uuid4().hex}", issued_at=now,
            received_at=now, subject=SubjectData(phone=phone, name="测试", residency="unknown"), subject_key=key,
            area_code=area, assigned=True, fraud_type="investment", risk_level=risk, in_progress=False,
            amount_at_risk=None, evidence={},
        )  # fmt: skip
        envelope = Envelope.new(WarningReceivedV1.TYPE, "quanzu/intake", data, subject=str(data.warning_id))
        futures.append(await producer.send(Topic.WARNINGS_RECEIVED, envelope.to_bytes(), key=key.encode()))
        sent.append(Sent(data.warning_id, phone, risk))
    await asyncio.gather(*futures)
    return sent


@dataclass
class Observed:
    """Everything dispatch recorded for some warnings: cases, tasks, deadlines, events, notifications."""

    case_of: dict[uuid.UUID, list[uuid.UUID]]  # warning id -> the cases it is part of
    cases: dict[uuid.UUID, Any]
    tasks: dict[uuid.UUID, Any]
    deadlines: list[Any]
    events: list[Envelope]  # dispatch's outbox: what it committed to publish
    notifications: list[Any]
    transitions: list[Any]

    def tasks_of(self, case_id: uuid.UUID) -> list[Any]:
        return [t for t in self.tasks.values() if t["case_id"] == case_id]

    def deadlines_of(self, ref: uuid.UUID, kind: str) -> list[Any]:
        return [d for d in self.deadlines if d["ref"] == ref and d["kind"] == kind]

    def events_of(self, event_type: str, **data: str) -> list[Envelope]:
        return [
            e for e in self.events if e.type == event_type and all(e.data.get(k) == v for k, v in data.items())
        ]  # fmt: skip


async def observe(pool: Any, warnings: list[Sent]) -> Observed:
    ids = [s.warning_id for s in warnings]
    links = await pool.fetch(
        "SELECT warning_id, case_id FROM dispatch.case_warnings WHERE warning_id = ANY($1::uuid[])", ids
    )
    case_of: dict[uuid.UUID, list[uuid.UUID]] = {i: [] for i in ids}
    for link in links:
        case_of[link["warning_id"]].append(link["case_id"])
    case_ids = sorted({link["case_id"] for link in links})
    cases = {r["id"]: r for r in await pool.fetch("SELECT * FROM dispatch.cases WHERE id = ANY($1::uuid[])", case_ids)}
    tasks = {
        r["id"]: r for r in await pool.fetch("SELECT * FROM dispatch.tasks WHERE case_id = ANY($1::uuid[])", case_ids)
    }
    refs = [*case_ids, *tasks]
    deadlines = await pool.fetch("SELECT * FROM dispatch.deadlines WHERE ref = ANY($1::uuid[]) ORDER BY id", refs)
    keys = [str(c).encode() for c in case_ids]
    rows = await pool.fetch("SELECT value FROM dispatch.outbox WHERE key = ANY($1::bytea[]) ORDER BY id", keys)
    events = [Envelope.model_validate_json(r["value"]) for r in rows]
    notifications = await pool.fetch(
        "SELECT case_id, task_id, kind FROM dispatch.notifications WHERE case_id = ANY($1::uuid[])", case_ids
    )
    transitions = await pool.fetch(
        "SELECT case_id, to_state FROM dispatch.case_transitions WHERE case_id = ANY($1::uuid[])", case_ids
    )
    return Observed(case_of, cases, tasks, deadlines, events, notifications, transitions)


async def pending_deadlines(pool: Any, warnings: list[Sent]) -> list[Any]:
    """The deadlines not yet fired of the warnings' cases and tasks (due_at, and whether it is overdue)."""
    rows: list[Any] = await pool.fetch(
        """
        WITH c AS (SELECT case_id FROM dispatch.case_warnings WHERE warning_id = ANY($1::uuid[]))
        SELECT d.id, d.kind, d.due_at, d.due_at <= clock_timestamp() AS overdue
          FROM dispatch.deadlines d
         WHERE d.fired_at IS NULL
           AND (d.ref IN (SELECT case_id FROM c)
                OR d.ref IN (SELECT t.id FROM dispatch.tasks t WHERE t.case_id IN (SELECT case_id FROM c)))
        """,
        [s.warning_id for s in warnings],
    )
    return rows


async def all_fired(pool: Any, warnings: list[Sent], timeout: float = 45) -> None:
    """Wait until every deadline of the warnings' cases has fired (each chain of re-notifications has ended)."""

    async def none_pending() -> bool:
        return not await pending_deadlines(pool, warnings)

    await wait_for(none_pending, timeout=timeout, interval=0.2, message="every deadline to fire")


async def cases_opened(pool: Any, warnings: list[Sent], timeout: float = 45) -> None:
    ids = [s.warning_id for s in warnings]

    async def every_warning_has_a_case() -> bool:
        found = await pool.fetchval(
            "SELECT count(DISTINCT warning_id) FROM dispatch.case_warnings WHERE warning_id = ANY($1::uuid[])", ids
        )
        return int(found) == len(ids)

    await wait_for(every_warning_has_a_case, timeout=timeout, interval=0.1, message="a case for every warning")


def _json(value: Any) -> dict[str, Any]:
    """A JSONB column as asyncpg returns it (text, without a codec)."""
    loaded: dict[str, Any] = json.loads(value) if isinstance(value, str | bytes) else (value or {})
    return loaded


# --- what must hold ------------------------------------------------------------------------------------------------

# The tasks and the timeline of a case by its risk, with the fast policy and no member acting on anything.
EXPECTED_TIERS = {
    "low": Counter({"sms": 1}),
    "high": Counter({"sms": 1, "call": 1, "visit": 1}),  # the call's deadline missed: a visit
    "critical": Counter({"sms": 1, "call": 1, "visit": 1}),  # call and visit at once; nothing more
}
EXPECTED_STATES = {
    "low": Counter({"opened": 1, "sms": 1, "closed": 1}),
    "high": Counter({"opened": 1, "calling": 1, "visiting": 1}),
    "critical": Counter({"opened": 1, "visiting": 1}),
}
# Acknowledgement deadlines missed: a call is re-notified once, then its supervisor alerted; a visit is re-notified,
# then handed to the backup team (with a fresh deadline), then its supervisor alerted.
EXPECTED_ACK_MISSES = {"call": 2, "visit": 3}


def check_exactly_once(obs: Observed, warnings: list[Sent], backup_team: uuid.UUID | None) -> None:
    """One case per warning; every deadline fired, and each one's effect committed once."""
    lost = [s.warning_id for s in warnings if not obs.case_of[s.warning_id]]
    assert not lost, f"{len(lost)} warning(s) without a case"
    doubled = {w: c for w, c in obs.case_of.items() if len(c) != 1}
    assert not doubled, f"warnings in more than one case: {doubled}"
    assert len(obs.cases) == len(warnings)

    unfired = [dict(d) for d in obs.deadlines if d["fired_at"] is None]
    assert not unfired, f"deadlines never fired: {unfired}"
    # A deadlock with the other process (both engines firing deadlines of one case, in different orders) is retried
    # without using up an attempt (`shared.timers`): it leaves its error behind with attempts at 0. A handler that
    # failed used one.
    failed = [
        dict(d)
        for d in obs.deadlines
        if d["kind"] != "sms.send" and d["last_error"] not in (None, "cancelled") and d["attempts"] > 0
    ]
    assert not failed, f"deadlines whose handler failed: {failed}"

    problems: list[str] = []
    for sent in warnings:
        [case_id] = obs.case_of[sent.warning_id]
        case = obs.cases[case_id]
        tasks = obs.tasks_of(case_id)
        tiers = Counter(t["tier"] for t in tasks)
        if tiers != EXPECTED_TIERS[sent.risk]:
            problems.append(f"case {case_id} ({sent.risk}): tasks {dict(tiers)}")
        states = Counter(t["to_state"] for t in obs.transitions if t["case_id"] == case_id)
        if states != EXPECTED_STATES[sent.risk]:
            problems.append(f"case {case_id} ({sent.risk}): transitions {dict(states)}")
        if sent.risk == "low" and (case["state"], case["closure"]) != ("closed", "sms_only"):
            problems.append(f"case {case_id}: {case['state']} {case['closure']}, not closed sms_only")
        escalations = obs.events_of("task.escalated", case_id=str(case_id))
        if len(escalations) != (1 if sent.risk == "high" else 0):
            problems.append(f"case {case_id} ({sent.risk}): {len(escalations)} task.escalated events")
        for task in tasks:
            problems.extend(_task_problems(obs, sent.risk, task, backup_team))
    assert not problems, "\n".join(problems)


def _task_problems(obs: Observed, risk: str, task: Any, backup_team: uuid.UUID | None) -> list[str]:
    tid, tier = task["id"], task["tier"]
    where = f"{tier} task {tid} ({risk})"
    problems: list[str] = []
    ack_rows = obs.deadlines_of(tid, "task.ack")
    due_rows = obs.deadlines_of(tid, "task.due")
    breaches = Counter(e.data["kind"] for e in obs.events_of("sla.breached", task_id=str(tid)))
    renotified = sum(1 for n in obs.notifications if n["task_id"] == tid and n["kind"] == "task.renotify")
    if len(due_rows) != 1:
        problems.append(f"{where}: {len(due_rows)} task.due deadlines")
    if tier == "sms":
        sends = obs.deadlines_of(tid, "sms.send")
        if len(sends) != 1:
            problems.append(f"{where}: sms.send deadlines {[dict(s) for s in sends]}")
        if task["status"] != "done" or not _json(task["result"]).get("accepted"):
            problems.append(f"{where}: {task['status']} {task['result']}")
        if len(obs.events_of("sms.sent", task_id=str(tid))) != 1:
            problems.append(f"{where}: {len(obs.events_of('sms.sent', task_id=str(tid)))} sms.sent events")
        if breaches or ack_rows:
            problems.append(f"{where}: breaches {dict(breaches)}, {len(ack_rows)} ack deadlines")
        return problems
    expected = EXPECTED_ACK_MISSES[tier]
    if (task["ack_misses"], len(ack_rows), breaches["ack"]) != (expected, expected, expected):
        problems.append(
            f"{where}: ack_misses {task['ack_misses']}, {len(ack_rows)} task.ack deadlines, "
            f"{breaches['ack']} ack breaches; expected {expected} of each"
        )
    if breaches["due"] != 1:
        problems.append(f"{where}: {breaches['due']} due breaches")
    if renotified != 1:
        problems.append(f"{where}: re-notified {renotified} times")
    if tier == "visit":
        assigned = obs.events_of("task.assigned", task_id=str(tid))
        reassigned = [e for e in assigned if e.data["by"] == "reassigned:backup"]
        if len(reassigned) != 1 or task["team_id"] != backup_team:
            problems.append(f"{where}: {len(reassigned)} reassignments, team {task['team_id']}")
    return problems


def check_sms_once(messages: list[dict[str, Any]], obs: Observed, warnings: list[Sent]) -> None:
    """The gateway recorded exactly one message per SMS task, under the task's id, to the subject's phone."""
    phones = {s.phone for s in warnings}
    mine = [m for m in messages if m["to"] in phones]
    sms_tasks = {str(t["id"]): t for t in obs.tasks.values() if t["tier"] == "sms"}
    by_key = Counter(m["idempotency_key"] for m in mine)
    assert set(by_key) == set(sms_tasks), "messages and SMS tasks differ"
    assert all(n == 1 for n in by_key.values()), by_key
    assert sorted(Counter(m["to"] for m in mine).values()) == [1] * len(warnings)
    for message in mine:
        task = sms_tasks[message["idempotency_key"]]
        assert _json(obs.cases[task["case_id"]]["subject"])["phone"] == message["to"]
        assert _json(task["result"])["provider_id"] == message["id"]  # the provider's id, recorded on the task


async def check_published(bootstrap: str, obs: Observed) -> int:
    """Every event dispatch committed reached dispatch.events, and nothing else for these cases did; returns
    how many extra copies (same event id) the topic holds, which consumers drop by id."""
    committed = {e.id for e in obs.events}
    cases = {str(c) for c in obs.cases}

    def complete(envelopes: list[Envelope]) -> bool:
        return committed <= {e.id for e in envelopes}

    envelopes = [e for e in await read_envelopes(bootstrap, Topic.DISPATCH_EVENTS, complete) if e.subject in cases]
    assert {e.id for e in envelopes} == committed
    return len(envelopes) - len(committed)


# --- the tests -----------------------------------------------------------------------------------------------------


async def test_a_process_killed_with_deadlines_pending_fires_each_of_them_once_after_a_restart(
    launcher: Launcher, producer: AIOKafkaProducer, pool: Any, gateway: Gateway, own_broker: Broker, district: District
) -> None:
    before = await gateway.state()
    await gateway.control(delay_s=1)  # a slow gateway: the kill lands while an SMS is being handed over
    first = await launcher.start("kill-1")
    warnings = await produce(producer, KILL_AREA, ["critical"] * 30)

    async def every_case_has_pending_deadlines_and_an_sms_is_in_flight() -> bool:
        rows = await pool.fetch(
            """SELECT cw.warning_id,
                      (SELECT count(*) FROM dispatch.deadlines d JOIN dispatch.tasks t ON t.id = d.ref
                        WHERE t.case_id = cw.case_id AND d.fired_at IS NULL) AS pending
                 FROM dispatch.case_warnings cw WHERE cw.warning_id = ANY($1::uuid[])""",
            [s.warning_id for s in warnings],
        )
        cases_ready = len(rows) == len(warnings) and all(r["pending"] > 0 for r in rows)
        return cases_ready and (await gateway.state())["in_flight"] >= 1

    await wait_for(
        every_case_has_pending_deadlines_and_an_sms_is_in_flight, timeout=45, interval=0.02,
        message="30 cases with deadlines, and an SMS on its way",
    )  # fmt: skip
    await first.kill()
    await gateway.control()  # the message in flight is still recorded; the next ones go at once
    pending_at_kill = await pending_deadlines(pool, warnings)
    assert {r["kind"] for r in pending_at_kill} >= {"sms.send", "task.ack", "task.due"}, pending_at_kill

    # Dead: what comes due now waits for the next process.
    async def some_overdue() -> bool:
        return any(r["overdue"] for r in await pending_deadlines(pool, warnings))

    await wait_for(some_overdue, timeout=10, interval=0.05, message="a deadline to come due while no process runs")

    await launcher.start("kill-2")
    await all_fired(pool, warnings)
    obs = await observe(pool, warnings)
    check_exactly_once(obs, warnings, district.backup_team[KILL_AREA])
    check_sms_once(await gateway.messages(), obs, warnings)
    await check_published(own_broker.bootstrap, obs)
    # The SMS in flight when the process died (one batch per concurrent sender at most) were handed over again,
    # with the same keys, after the restart: some requests more than there are messages, and still one message each.
    after = await gateway.state()
    resent = after["requests"] - before["requests"] - len(warnings)
    assert 1 <= resent <= SMS_CONCURRENCY * SMS_BATCH, resent
    assert after["failures"] - before["failures"] == 0


async def test_two_processes_open_one_case_per_warning_fire_each_deadline_once_and_send_each_sms_once(
    launcher: Launcher, producer: AIOKafkaProducer, pool: Any, gateway: Gateway, own_broker: Broker, district: District
) -> None:
    before = await gateway.state()
    started_at = await pool.fetchval("SELECT clock_timestamp()")
    pair = await asyncio.gather(launcher.start("pair-a"), launcher.start("pair-b"))
    risks = ["low", "high", "critical"] * 8
    warnings = await produce(producer, PAIR_AREA, risks)

    await cases_opened(pool, warnings)
    await all_fired(pool, warnings)
    obs = await observe(pool, warnings)
    check_exactly_once(obs, warnings, district.backup_team[PAIR_AREA])
    check_sms_once(await gateway.messages(), obs, warnings)
    await check_published(own_broker.bootstrap, obs)

    # No SMS was even asked for twice: one POST per SMS task, and none failed.
    after = await gateway.state()
    sms_tasks = sum(1 for t in obs.tasks.values() if t["tier"] == "sms")
    assert (after["requests"] - before["requests"], after["failures"] - before["failures"]) == (sms_tasks, 0)

    # Each deadline was run by one process only: per kind, the two engines' counts add up to the rows fired (a
    # deadlock retried is one fired row, counted once).
    fired_rows = dict(
        await pool.fetch(
            """SELECT kind, count(*) FROM dispatch.deadlines
                WHERE fired_at >= $1
                  AND (last_error IS NULL OR kind = 'sms.send' OR (attempts = 0 AND last_error <> 'cancelled'))
                GROUP BY kind""",
            started_at,
        )
    )
    samples = [await p.metrics() for p in pair]
    fired_by = {
        kind: [_total(s, "quanzu_deadlines_fired_total", f'kind="{kind}",result="fired"') for s in samples]
        for kind in fired_rows
    }
    assert {k: sum(v) for k, v in fired_by.items()} == fired_rows, f"fired per process {fired_by}"
    handled_by = [_total(s, "quanzu_events_handled_total", 'topic="warnings.received"') for s in samples]
    assert sum(handled_by) >= len(warnings), handled_by


async def test_sms_held_back_by_a_failing_gateway_goes_out_once_when_it_recovers_and_the_case_closes(
    launcher: Launcher, producer: AIOKafkaProducer, pool: Any, gateway: Gateway, district: District
) -> None:
    await gateway.control(fail_rate=1, fail_status=503)
    before = await gateway.state()
    await launcher.start("sms")
    warnings = await produce(producer, SMS_AREA, ["low"] * 3)
    await cases_opened(pool, warnings)

    async def every_sms_failed_once() -> bool:
        attempts = await pool.fetch(
            """SELECT d.attempts FROM dispatch.deadlines d JOIN dispatch.tasks t ON t.id = d.ref
                JOIN dispatch.case_warnings cw ON cw.case_id = t.case_id
               WHERE d.kind = 'sms.send' AND cw.warning_id = ANY($1::uuid[])""",
            [s.warning_id for s in warnings],
        )
        return len(attempts) == len(warnings) and all(r["attempts"] >= 1 for r in attempts)

    await wait_for(every_sms_failed_once, timeout=45, interval=0.1, message="every SMS to fail at least once")
    failing = await gateway.state()
    assert failing["failures"] - before["failures"] >= len(warnings)
    assert not [m for m in await gateway.messages() if m["to"] in {s.phone for s in warnings}]

    await gateway.control()  # the gateway recovers

    async def closed() -> bool:
        count = await pool.fetchval(
            """SELECT count(*) FROM dispatch.cases c JOIN dispatch.case_warnings cw ON cw.case_id = c.id
                WHERE cw.warning_id = ANY($1::uuid[]) AND c.state = 'closed'""",
            [s.warning_id for s in warnings],
        )
        return int(count) == len(warnings)

    await wait_for(closed, timeout=45, interval=0.1, message="the SMS-only cases to close")
    await all_fired(pool, warnings)
    obs = await observe(pool, warnings)
    check_exactly_once(obs, warnings, None)
    check_sms_once(await gateway.messages(), obs, warnings)
    for task in obs.tasks.values():
        [send] = obs.deadlines_of(task["id"], "sms.send")
        assert send["attempts"] >= 1, dict(send)  # it failed (its last_error is overwritten: see `_task_problems`)
    assert {(c["state"], c["closure"]) for c in obs.cases.values()} == {("closed", "sms_only")}


async def test_a_failed_sms_attempt_is_retried_only_after_the_engines_backoff(
    launcher: Launcher, producer: AIOKafkaProducer, pool: Any, gateway: Gateway, district: District
) -> None:
    """`shared/timers.py`: "A handler that raises is retried with backoff"; `SMS_ATTEMPTS`: "the timer engine
    spaces the attempts out". The first backoff is 2 s: the next attempt must not be due before 2 s after the first
    failed. The gateway answers 503 after 3 s, so the one attempt of the provider times out at its 2 s deadline."""
    await gateway.control(fail_rate=1, delay_s=3)
    await launcher.start("backoff")
    warnings = await produce(producer, SMS_AREA, ["low"])
    try:

        async def failed_once() -> Any:
            return await pool.fetchrow(
                """SELECT d.attempts, d.last_error, d.due_at - t.created_at AS due_after_created,
                          extract(epoch FROM d.due_at - clock_timestamp()) AS due_in
                     FROM dispatch.deadlines d JOIN dispatch.tasks t ON t.id = d.ref
                     JOIN dispatch.case_warnings cw ON cw.case_id = t.case_id
                    WHERE d.kind = 'sms.send' AND cw.warning_id = $1 AND d.attempts >= 1""",
                warnings[0].warning_id,
            )

        # Seen within 20 ms of the failure being committed: a retry 2 s after the failure is still >= 1.5 s away.
        row = await wait_for(failed_once, timeout=45, interval=0.02, message="the first SMS attempt to fail")
        assert "no answer within" in row["last_error"], dict(row)
        assert float(row["due_in"]) >= 1.5, (
            f"the next attempt is due {float(row['due_in']):.2f} s after the failure was recorded "
            f"({row['due_after_created']} after the task was created), not 2 s: {dict(row)}"
        )
    finally:
        await gateway.control()
        await wait_for(
            lambda: pool.fetchval(
                """SELECT c.state = 'closed' FROM dispatch.cases c JOIN dispatch.case_warnings cw ON cw.case_id = c.id
                    WHERE cw.warning_id = $1""",
                warnings[0].warning_id,
            ),
            timeout=45, interval=0.1, message="the SMS to go out once the gateway recovers",
        )  # fmt: skip


async def test_a_slow_gateway_does_not_hold_the_case_or_its_task_locked_while_it_answers(
    launcher: Launcher, producer: AIOKafkaProducer, pool: Any, gateway: Gateway, district: District
) -> None:
    """A joining warning, an outcome or a deadline of the case would otherwise wait for the provider's answer."""
    await gateway.control(delay_s=4)
    try:
        await launcher.start("slow-gateway")
        [sent] = await produce(producer, SMS_AREA, ["low"])
        await cases_opened(pool, [sent])

        async def in_flight() -> bool:
            return int((await gateway.state())["in_flight"]) >= 1

        await wait_for(in_flight, timeout=30, interval=0.05, message="the SMS to be in flight")
        async with pool.acquire() as conn, conn.transaction():
            locked = await conn.fetch(
                """SELECT c.id FROM dispatch.cases c JOIN dispatch.case_warnings cw ON cw.case_id = c.id
                     JOIN dispatch.tasks t ON t.case_id = c.id AND t.tier = 'sms'
                    WHERE cw.warning_id = $1 FOR UPDATE OF c, t NOWAIT""",
                sent.warning_id,
            )  # raises LockNotAvailableError if the sender holds either row
            assert len(locked) == 1
            assert int((await gateway.state())["in_flight"]) >= 1, "the send ended before the rows were tried"
    finally:
        await gateway.control()
    await all_fired(pool, [sent])
    check_sms_once(await gateway.messages(), await observe(pool, [sent]), [sent])
