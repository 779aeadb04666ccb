"""Intake under load: throughput to saturation against a floor, latency at a fixed rate, peak memory.

A private PostgreSQL is started under .quanzu/bench-pg (deleted at the end) and a whole Quanzu runs on it as real
processes (`services.cli.system.LocalSystem`: its own tansu broker, one intake process as production runs it,
`quanzu serve intake` with one uvicorn worker, dispatch, feedback and the SMS gateway), with the demo district and
a source whose rate limit (100,000 records/s) is far above anything one machine sends. The load comes from
`tests.bench.load` in this process.

In order:
1. The generator's ceiling: the same requests against a trivial server in another process.
2. Latency at a fixed rate (open loop), the whole system running: intake's answer, and the time from each
   request's scheduled send to dispatch's first actions on its case (read back from dispatch's tables).
3. Dispatch and feedback are stopped, so that the remaining steps compare intake with a floor that has no
   consumers either (their peak memory so far is kept).
4. The floor: the same records written straight to PostgreSQL (asyncpg COPY into a copy of intake's warnings
   table) and produced straight to the broker (aiokafka, acks=all, no idempotence), concurrently, no HTTP and
   no validation; workers ramped to saturation.
5. Single-record posts, then 1,000-record batches, connections ramped until throughput stops rising. After each
   step the bench waits for intake's outbox to be published, so that no step inherits another's backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.cli import admin
from services.cli.system import LocalSystem
from services.intake.warnings.models import WarningCreate
from services.intake.warnings.policy import content_hash
from shared.db import asyncpg_dsn
from shared.devinfra import start_postgres, wait_for
from shared.events import Envelope, WarningReceivedV1
from shared.kafka import make_producer
from shared.personal import subject_key
from tests.bench import load
from tests.bench.rates import table

NAME = "intake"
TITLE = "Intake throughput, latency and memory"
BENCH_HOME = Path(".quanzu") / "bench-pg"
SOURCE = "bench-upstream"
RATE_LIMIT = 100_000.0  # the most a source may be given; the bucket then holds 200,000 records
BATCH = 1_000
INTAKE_PROCESSES = (1, 2)  # throughput of one intake process, then of two (replicas, as production runs intake)
SINGLE_CONNECTIONS = (4, 16, 64, 128)
BATCH_CONNECTIONS = (1, 2, 4, 8)
FLOOR_WORKERS = (1, 2, 4)
SATURATED = 1.05  # a step that does not beat the best so far by 5% ends the ramp
LATENCY_RATE = 500.0
FLOOR_TOPIC = "bench.floor"
FLOOR_PARTITIONS = 12  # as warnings.received

# --- the records -----------------------------------------------------------------------------------------------

# Risk levels in the shares the rates benchmark uses; every one gets an SMS at once under the default policy.
RISKS = ["low"] * 23 + ["medium"] * 41 + ["high"] * 25 + ["critical"] * 11
FRAUD_TYPES = ["task_rebate", "investment", "loan", "customer_service", "impersonate_officials", "romance"]
ID_NUMBER = "110101199003078515"
_RECORD = (
    '{"external_id":"%s","issued_at":"%s","subject":{"phone":"%s","name":"张三","id_number":"'
    + ID_NUMBER
    + '","address":"山东省青岛市市南区XX路12号","residency":"unknown"},"area_code":"%s","fraud_type":"%s",'
    '"risk_level":"%s","in_progress":false,"amount_at_risk":50000.0,"evidence":{"suspect_numbers":["17012345678"],'
    '"accounts":["6222021234567890123"],"urls":["https://invest-example.invalid/app"],"apps":["某某理财"]}}'
)


@dataclass(frozen=True)
class Records:
    """Warning records as an upstream system posts them, each with its own external_id and phone number (so
    each opens a case of its own); `phase` (a digit) keeps the numbers of the benchmark's phases apart."""

    run: str
    areas: tuple[str, ...]
    issued_at: str

    def one(self, phase: int, n: int) -> bytes:
        return (
            _RECORD
            % (
                f"BENCH-{self.run}-{phase}-{n}",
                self.issued_at,
                f"13{phase}{n:08d}",
                self.areas[n % len(self.areas)],
                FRAUD_TYPES[n % len(FRAUD_TYPES)],
                RISKS[n % len(RISKS)],
            )
        ).encode()

    def batch(self, phase: int, n: int) -> bytes:
        return b'{"warnings":[' + b",".join(self.one(phase, n * BATCH + i) for i in range(BATCH)) + b"]}"


def _post(port: int, key: str, path: str, body: bytes) -> bytes:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return load.http_request("POST", path, port=port, headers=headers, body=body)


def accepted_in_batch(response: load.Response) -> int:
    """Records stored by a batch answer (202 per item); 0 for a failed request."""
    if response.status != 200:
        return 0
    return int(orjson.loads(response.body)["accepted"])


# --- where the CPU goes ----------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] == parent:
                pids.append(int(entry.name))
    return pids


def _machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy (anything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / _TICK


@dataclass
class CpuMeter:
    """CPU used by groups of processes over a window, in cores (CPU seconds per second)."""

    groups: dict[str, Callable[[], list[int]]]

    def _sample(self) -> dict[str, dict[int, float]]:
        sample = {}
        for name, pids in self.groups.items():
            sample[name] = {pid: stat[1] for pid in pids() if (stat := _proc_stat(pid)) is not None}
        return sample

    async def window(self, delay: float, seconds: float) -> dict[str, float]:
        await asyncio.sleep(delay)
        before, machine = self._sample(), _machine_busy()
        await asyncio.sleep(seconds)
        after, machine = self._sample(), _machine_busy() - machine
        cores = {
            name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in pids.items()) / seconds
            for name, pids in after.items()
        }
        return cores | {"machine": machine / seconds}


def _meter(system: LocalSystem, postmaster: int) -> CpuMeter:
    def pids(name: str) -> Callable[[], list[int]]:
        def get() -> list[int]:
            popen = system.processes[name].popen
            return [popen.pid] if popen is not None and system.processes[name].running else []

        return get

    def broker() -> list[int]:
        process = system.broker.process if system.broker is not None else None
        return [process.pid] if process is not None else []

    def intake() -> list[int]:
        return [pid for p in system.processes_of("intake") for pid in pids(p.name)()]

    return CpuMeter(
        {
            "intake": intake,
            "dispatch": pids("dispatch"),
            "feedback": pids("feedback"),
            "smsgw": pids("smsgw"),
            "postgres": lambda: [postmaster, *_children(postmaster)],
            "broker": broker,
            "generator": lambda: [os.getpid()],
        }
    )


# --- the floor: COPY + produce, no HTTP, no validation ---------------------------------------------------------

COLUMNS = (
    "id", "source", "external_id", "content_hash", "received_at", "issued_at", "area_code", "assigned", "fraud_type",
    "risk_level", "in_progress", "amount_at_risk", "subject_key", "subject", "evidence",
)  # fmt: skip


@dataclass(frozen=True)
class FloorRows:
    """1,000 records as intake stores them (row and `warning.received` event), validated and serialised once;
    each chunk written gets fresh ids and external_ids, so the unique index sees new keys as intake's does."""

    rows: list[tuple[Any, ...]]
    events: list[tuple[bytes, bytes]]  # (key, value) as intake's relay produces them

    @classmethod
    def prepare(cls, records: Records, secret: str, areas: set[str]) -> FloorRows:
        rows, events = [], []
        now = datetime.now(UTC)
        for n in range(BATCH):
            record = WarningCreate.model_validate_json(records.one(9, n))
            subject = record.subject
            key = subject_key(secret, phone=subject.phone, id_number=subject.id_number)
            row = dict(
                id=uuid.uuid4(), source=SOURCE, external_id=record.external_id, content_hash=content_hash(record),
                received_at=now, issued_at=record.issued_at, area_code=record.area_code,
                assigned=record.area_code in areas, fraud_type=record.fraud_type, risk_level=record.risk_level,
                in_progress=record.in_progress, amount_at_risk=record.amount_at_risk, subject_key=key,
                subject=subject.model_dump(mode="json"), evidence=record.evidence.model_dump(mode="json"),
            )  # fmt: skip
            data = WarningReceivedV1.model_validate({**row, "warning_id": row["id"]})
            envelope = Envelope.new(WarningReceivedV1.TYPE, "quanzu/intake", data, subject=str(row["id"]))
            events.append((key.encode(), envelope.to_bytes()))
            values = {**row, "subject": orjson.dumps(row["subject"]).decode()}
            values["evidence"] = orjson.dumps(row["evidence"]).decode()
            rows.append(tuple(values[c] for c in COLUMNS))
        return cls(rows, events)

    def chunk(self, n: int) -> list[tuple[Any, ...]]:
        return [(uuid.uuid4(), r[1], f"FLOOR-{n}-{i}", *r[3:]) for i, r in enumerate(self.rows)]


@dataclass
class FloorStep:
    workers: int
    records_per_s: float
    cpu: dict[str, float]


async def _floor_step(
    dsn: str,
    producer: AIOKafkaProducer,
    data: FloorRows,
    workers: int,
    seconds: float,
    meter: CpuMeter,
    numbers: itertools.count[int],
) -> FloorStep:
    done = 0
    warmup = 1.0
    start = time.monotonic()
    window = (start + warmup, start + warmup + seconds)

    async def produce() -> None:
        futures = [await producer.send(FLOOR_TOPIC, value=value, key=key) for key, value in data.events]
        await asyncio.gather(*futures)

    async def worker() -> None:
        nonlocal done
        conn = await asyncpg.connect(dsn)
        try:
            while time.monotonic() < window[1]:
                rows = data.chunk(next(numbers))
                await asyncio.gather(
                    conn.copy_records_to_table("warnings", schema_name="bench_floor", records=rows, columns=COLUMNS),
                    produce(),
                )
                if window[0] <= time.monotonic() < window[1]:
                    done += len(rows)
        finally:
            await conn.close()

    _, cpu = await asyncio.gather(asyncio.gather(*(worker() for _ in range(workers))), meter.window(warmup, seconds))
    return FloorStep(workers, done / seconds, cpu)


async def floor(system: LocalSystem, data: FloorRows, seconds: float, meter: CpuMeter) -> list[FloorStep]:
    dsn = asyncpg_dsn(system.database_url)
    conn = await asyncpg.connect(dsn)
    admin_client = AIOKafkaAdminClient(bootstrap_servers=system.kafka_bootstrap)
    await admin_client.start()
    producer = make_producer(system.kafka_bootstrap, client_id="bench-floor")
    await producer.start()
    try:
        await admin_client.create_topics([NewTopic(FLOOR_TOPIC, FLOOR_PARTITIONS, 1)])
        await conn.execute("CREATE SCHEMA bench_floor")
        await conn.execute("CREATE TABLE bench_floor.warnings (LIKE intake.warnings INCLUDING ALL)")
        steps: list[FloorStep] = []
        numbers = itertools.count()  # chunk numbers, unique over the steps: they make the external_ids
        for workers in FLOOR_WORKERS:
            steps.append(await _floor_step(dsn, producer, data, workers, seconds, meter, numbers))
            print(f"  floor, {workers} workers: {steps[-1].records_per_s:,.0f} records/s", flush=True)
            if len(steps) > 1 and steps[-1].records_per_s < SATURATED * max(s.records_per_s for s in steps[:-1]):
                break
        return steps
    finally:
        with contextlib.suppress(Exception):
            await conn.execute("DROP SCHEMA bench_floor CASCADE")
        await conn.close()
        await producer.stop()
        await admin_client.close()


# --- intake throughput -----------------------------------------------------------------------------------------


@dataclass
class Step:
    kind: str  # "single" | "batch"
    processes: int  # intake processes posted to, the connections spread over them
    connections: int
    records_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int  # records not stored (all of a request answered other than 2xx) and connections that broke
    statuses: dict[int, int]  # answers by HTTP status
    cpu: dict[str, float]
    outbox_drain_s: float  # after the step, until intake's outbox was all published


async def _outbox_pending(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM intake.outbox WHERE published_at IS NULL"))


async def _drain(conn: asyncpg.Connection, timeout: float = 120.0) -> float:
    start = time.monotonic()

    async def empty() -> bool:
        return await _outbox_pending(conn) == 0

    await wait_for(empty, timeout=timeout, interval=0.1, message="intake's outbox to be published")
    return time.monotonic() - start


async def ramp(
    kind: str,
    levels: Sequence[int],
    make_request: load.RequestFactory,
    *,
    ports: Sequence[int],
    seconds: float,
    meter: CpuMeter,
    conn: asyncpg.Connection,
    records_per_request: int,
) -> list[Step]:
    """Steps at rising concurrency, until one does not beat the best before it by 5%."""
    records_of: Callable[[load.Response], int] = (
        accepted_in_batch if records_per_request > 1 else (lambda r: 1 if r.status == 202 else 0)
    )
    counter = itertools.count()
    steps: list[Step] = []
    for connections in levels:
        result, cpu = await asyncio.gather(
            load.closed_loop(
                ports, make_request, connections=connections, seconds=seconds, records_of=records_of, counter=counter
            ),
            meter.window(1.0, seconds),
        )
        drained = await _drain(conn)
        step = Step(
            kind,
            len(ports),
            connections,
            result.records_per_s,
            result.requests_per_s,
            1000 * load.percentile(result.latencies, 50),
            1000 * load.percentile(result.latencies, 99),
            result.requests * records_per_request - result.records + result.errors,
            dict(result.statuses),
            cpu | {"generator": result.generator_cores},
            drained,
        )
        steps.append(step)
        print(
            f"  {kind}, {_processes(len(ports))}, {connections} connections: {step.records_per_s:,.0f} records/s, "
            f"p99 {step.p99_ms:,.0f} ms, "
            f"{step.failed} failed, intake {cpu['intake']:.2f} cores, outbox drained in {drained:.1f} s",
            flush=True,
        )
        if len(steps) > 1 and step.records_per_s < SATURATED * max(s.records_per_s for s in steps[:-1]):
            break
    return steps


# --- latency at a fixed rate -----------------------------------------------------------------------------------

_FIRST_ACTIONS = """
SELECT cw.warning_id, c.opened_at,
       (SELECT min(d.fired_at)
          FROM dispatch.tasks t
          JOIN dispatch.deadlines d ON d.ref = t.id AND d.kind = 'sms.send'
         WHERE t.case_id = c.id AND t.tier = 'sms' AND t.status = 'done'
           AND (t.result ->> 'accepted')::boolean) AS sms_at
  FROM dispatch.case_warnings cw
  JOIN dispatch.cases c ON c.id = cw.case_id
 WHERE cw.warning_id = ANY($1::uuid[])
"""


@dataclass
class Dist:
    """Latencies in ms: p50, p90, p99 and max over every request, those that never completed counting as infinite;
    `beyond_ms` is how long each of those had at least waited when the measurement stopped."""

    ms: dict[str, float]
    count: int
    missing: int
    beyond_ms: float

    def cell(self, key: str) -> str:
        value = self.ms[key]
        if value == math.inf:
            return f"> {self.beyond_ms:,.0f}"
        return _n(value)


def dist(done_s: Sequence[float], missing_for_s: Sequence[float]) -> Dist:
    """`done_s`: the latencies of what completed; `missing_for_s`: how long each of the rest had waited so far."""
    values = [*done_s, *(math.inf for _ in missing_for_s)]
    ms = {
        "p50": 1000 * load.percentile(values, 50),
        "p90": 1000 * load.percentile(values, 90),
        "p99": 1000 * load.percentile(values, 99),
        "max": 1000 * max(values, default=math.nan),
    }
    return Dist(ms, len(values), len(missing_for_s), 1000 * min(missing_for_s, default=math.nan))


@dataclass
class Latency:
    rate: float
    seconds: float
    sent: int
    accepted: int
    failed: int  # answered other than 202, or the connection failed
    statuses: dict[str, int]  # answers by HTTP status ("none": the connection failed)
    connections: int
    intake: Dist  # scheduled send → the answer
    opened: Dist  # scheduled send → dispatch opened the case
    sms: Dist  # scheduled send → the SMS accepted by the gateway
    wait_s: float  # how long after the run the bench waited for dispatch
    opened_per_s: float  # cases dispatch opened per second, between its first and its last
    cpu: dict[str, float]
    generator_cores: float


async def _first_actions(
    system: LocalSystem, scheduled: dict[uuid.UUID, float], wait: float
) -> tuple[list[asyncpg.Record], float]:
    conn = await asyncpg.connect(asyncpg_dsn(system.database_url))
    start = time.monotonic()
    try:

        async def all_sent() -> bool:
            rows = await conn.fetch(_FIRST_ACTIONS, list(scheduled))
            return sum(1 for r in rows if r["sms_at"] is not None) == len(scheduled)

        with contextlib.suppress(TimeoutError):
            await wait_for(all_sent, timeout=wait, interval=0.5, message="dispatch to send every SMS")
        return await conn.fetch(_FIRST_ACTIONS, list(scheduled)), time.monotonic() - start
    finally:
        await conn.close()


async def latency(
    system: LocalSystem,
    make_request: load.RequestFactory,
    *,
    ports: Sequence[int],
    seconds: float,
    wait: float,
    meter: CpuMeter,
) -> Latency:
    run, cpu = await asyncio.gather(
        load.open_loop(ports, make_request, rate=LATENCY_RATE, seconds=seconds),
        meter.window(0.0, seconds),
    )
    ok = [s for s in run.sent if s.response is not None and s.response.status == 202]
    scheduled = {uuid.UUID(orjson.loads(s.response.body)["id"]): run.wall(s.scheduled) for s in ok if s.response}
    rows, waited = await _first_actions(system, scheduled, wait)
    now = time.time()
    opened = {r["warning_id"]: r["opened_at"].timestamp() for r in rows}
    sms = {r["warning_id"]: r["sms_at"].timestamp() for r in rows if r["sms_at"] is not None}

    def first(action: dict[uuid.UUID, float]) -> Dist:
        return dist(
            [at - scheduled[w] for w, at in action.items()],
            [now - at for w, at in scheduled.items() if w not in action],
        )

    answered = [s for s in run.sent if s.done != math.inf]
    return Latency(
        LATENCY_RATE,
        seconds,
        len(run.sent),
        len(ok),
        len(answered) - len(ok),
        dict(Counter(str(s.response.status) if s.response else "none" for s in answered)),
        run.connections_opened,
        dist([s.latency for s in answered], [run.ended - s.scheduled for s in run.unanswered]),
        first(opened),
        first(sms),
        waited,
        _per_second(list(opened.values())),
        cpu,
        run.generator_cpu / (run.ended - run.started),
    )


def _per_second(times: list[float]) -> float:
    span = max(times, default=0.0) - min(times, default=0.0)
    return len(times) / span if span > 0 else math.nan


# --- the whole run ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    ceiling_single: load.ClosedLoopResult
    ceiling_batch: load.ClosedLoopResult
    latency: Latency
    floor: list[FloorStep]
    single: list[Step]
    batch: list[Step]
    memory_kib: dict[str, tuple[int, int]]  # process -> (peak RSS over its life, RSS when last measured)
    import_peak_kib: int  # the peak RSS of a fresh interpreter importing what every process imports
    postgres: str
    seconds: float
    total_s: float = 0.0


def _rss_kib(system: LocalSystem, name: str) -> int:
    popen = system.processes[name].popen
    if popen is None or not system.processes[name].running:
        return 0
    for line in Path(f"/proc/{popen.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _import_peak_kib() -> int:
    code = "import resource, services.cli.main; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return int(out)


def _postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


async def _bench(
    admin_url: str, pgdata: Path, home: Path, seconds: float, latency_seconds: float, wait: float
) -> Result:
    started = time.monotonic()
    async with LocalSystem(
        home=home, pg_admin_url=admin_url, database="quanzu_bench_intake", replicas={"intake": max(INTAKE_PROCESSES)}
    ) as system:
        settings = system.settings
        demo = await admin.demo(settings)
        key = await admin.source_add(settings, SOURCE, RATE_LIMIT)
        if not await admin.wait_until_intake_knows(settings, demo.area_codes, timeout=60):
            raise RuntimeError("intake did not learn the demo areas")
        conn = await asyncpg.connect(asyncpg_dsn(system.database_url))
        try:
            postgres = str(await conn.fetchval("SHOW server_version"))
            ports = [p.port for p in system.processes_of("intake")]
            port = ports[0]  # the Host header only; requests go where the generator's connections are
            issued = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
            records = Records(uuid.uuid4().hex[:8], tuple(sorted(demo.area_codes)), issued)
            meter = _meter(system, _postmaster(pgdata))

            def single(phase: int) -> load.RequestFactory:
                return lambda n: _post(port, key, "/v1/warnings", records.one(phase, n))

            def batch(phase: int) -> load.RequestFactory:
                return lambda n: _post(port, key, "/v1/warnings/batch", records.batch(phase, n))

            print("the generator against a trivial server ...", flush=True)
            ceiling_single = await load.ceiling(single(1), connections=64, seconds=3)
            ceiling_batch = await load.ceiling(batch(1), connections=4, seconds=3, records_per_request=BATCH)
            print(f"latency at {LATENCY_RATE:.0f} records/s for {latency_seconds:.0f} s ...", flush=True)
            lat = await latency(system, single(2), ports=ports, seconds=latency_seconds, wait=wait, meter=meter)
            print(f"{latency_table(lat)}\n{latency_cpu_line(lat)}", flush=True)
            await _drain(conn)
            rss = {name: _rss_kib(system, name) for name in ("dispatch", "feedback")}
            for name in ("dispatch", "feedback"):
                system.kill(name)  # keeps their peak memory so far
            print("the floor (COPY + produce) ...", flush=True)
            data = FloorRows.prepare(records, settings.subject_key_secret.get_secret_value(), demo.area_codes)
            floor_steps = await floor(system, data, seconds, meter)
            await conn.execute("CHECKPOINT")
            print("single-record posts ...", flush=True)
            kw: dict[str, Any] = {"seconds": seconds, "meter": meter, "conn": conn}
            singles, batches = [], []
            # Phases 3, 5 (single) and 4, 6 (batches): every step posts new records, none a replay of an earlier one.
            for i, n in enumerate(INTAKE_PROCESSES):
                kw["ports"] = ports[:n]
                singles += await ramp("single", SINGLE_CONNECTIONS, single(3 + 2 * i), records_per_request=1, **kw)
            print("1,000-record batches ...", flush=True)
            for i, n in enumerate(INTAKE_PROCESSES):
                kw["ports"] = ports[:n]
                batches += await ramp("batch", BATCH_CONNECTIONS, batch(4 + 2 * i), records_per_request=BATCH, **kw)
        finally:
            await conn.close()
        rss |= {name: _rss_kib(system, name) for name in system.processes if name not in rss}
        memory = {name: (system.peak_rss_kib(name), rss[name]) for name in system.processes}
    return Result(
        ceiling_single, ceiling_batch, lat, floor_steps, singles, batches, memory, await _import_peak_kib(), postgres,
        seconds,
        time.monotonic() - started,
    )  # fmt: skip


def run(seconds: float = 8.0, latency_seconds: float = 25.0, wait: float = 60.0) -> Result:
    """Start a private PostgreSQL and a whole Quanzu on it, measure, and delete it all again."""
    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="intake-", dir=BENCH_HOME)).resolve()
    try:
        server, admin_url = start_postgres(workdir / "pgdata")
        try:
            return load.run(_bench(admin_url, workdir / "pgdata", workdir / "system", seconds, latency_seconds, wait))
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            BENCH_HOME.rmdir()  # only if no other run is using it


# --- the report ------------------------------------------------------------------------------------------------


def _n(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _cores(cpu: dict[str, float], name: str) -> str:
    return f"{cpu.get(name, float('nan')):.2f}"


def best(steps: Sequence[Step]) -> Step:
    return max(steps, key=lambda s: s.records_per_s)


def floor_rate(result: Result) -> float:
    return max(s.records_per_s for s in result.floor)


CPU_COLUMNS = ("intake", "postgres", "broker", "generator", "machine")


def _failed_cell(step: Step) -> str:
    other = {str(status): n for status, n in step.statuses.items() if status not in (200, 202)}
    return f"{step.failed:,}" + (f" ({_statuses(other)})" if other else "")


def throughput_table(result: Result) -> str:
    rows = []
    for s in result.floor:
        rows.append(
            [
                f"floor: COPY + produce, {s.workers} worker{'s' if s.workers > 1 else ''}",
                _n(s.records_per_s),
                "1.00" if s.records_per_s == floor_rate(result) else f"{s.records_per_s / floor_rate(result):.2f}",
                "-",
                "-",
                "-",
                *(_cores(s.cpu, c) for c in CPU_COLUMNS),
                "-",
            ]
        )
    for step in [*result.single, *result.batch]:
        what = "single posts" if step.kind == "single" else "1,000-record batches"
        rows.append(
            [
                f"{what}, {_processes(step.processes)}, {step.connections} connections",
                _n(step.records_per_s),
                f"{step.records_per_s / floor_rate(result):.2f}",
                f"{step.p50_ms:,.1f}",
                f"{step.p99_ms:,.1f}",
                _failed_cell(step),
                *(_cores(step.cpu, c) for c in CPU_COLUMNS),
                f"{step.outbox_drain_s:.1f}",
            ]
        )
    return table(
        ["what", "records/s", "× floor", "p50 ms", "p99 ms", "failed", *(f"{c} cores" for c in CPU_COLUMNS),
         "outbox drain s"],
        rows,
        [False, *([True] * (6 + len(CPU_COLUMNS)))],
    )  # fmt: skip


def latency_table(lat: Latency) -> str:
    rows = [
        ("intake: the answer to the POST", lat.intake),
        ("intake → dispatch opened the case", lat.opened),
        ("intake → the SMS accepted by the gateway", lat.sms),
    ]
    cells = [[what, *(d.cell(k) for k in ("p50", "p90", "p99", "max")), f"{d.count - d.missing:,} of {d.count:,}"]
             for what, d in rows]  # fmt: skip
    return table(["ms from the scheduled send", "p50", "p90", "p99", "max", "completed"], cells, [False, *[True] * 5])


def memory_table(result: Result) -> str:
    rows = [[name, f"{peak / 1024:,.0f}", f"{rss / 1024:,.0f}"] for name, (peak, rss) in result.memory_kib.items()]
    return table(["process", "peak RSS (VmHWM) MiB", "RSS at the end MiB"], rows, [False, True, True])


def ceiling_line(result: Result) -> str:
    cs, cb = result.ceiling_single, result.ceiling_batch
    return (
        f"Generator ceiling (the same requests against a trivial server in another process): single posts "
        f"{cs.requests_per_s:,.0f} requests/s at {cs.connections} connections using {cs.generator_cores:.2f} cores; "
        f"batches {cb.records_per_s:,.0f} records/s ({cb.requests_per_s:,.1f} requests/s) at {cb.connections} "
        f"connections using {cb.generator_cores:.2f} cores."
    )


def _processes(n: int) -> str:
    return "1 intake process" if n == 1 else f"{n} intake processes"


def _goal(met: bool) -> str:
    return "met" if met else "not met"


def headline(result: Result) -> str:
    single, batch, lat = best(result.single), best(result.batch), result.latency
    ratio = batch.records_per_s / floor_rate(result)
    return (
        f"**Single posts: {single.records_per_s:,.0f} records/s with {_processes(single.processes)} at "
        f"{single.connections} connections (goal ≥ 1,500: {_goal(single.records_per_s >= 1500)}). Batches: "
        f"{batch.records_per_s:,.0f} records/s with {_processes(batch.processes)}, {ratio:.0%} of the "
        f"floor's {floor_rate(result):,.0f} (goal ≥ 50%: {_goal(ratio >= 0.5)}). At {lat.rate:,.0f} records/s: intake "
        f"p99 {lat.intake.cell('p99')} ms (goal < 50 ms: {_goal(lat.intake.ms['p99'] < 50)}); intake → SMS p99 "
        f"{lat.sms.cell('p99')} ms (goal < 1 s: {_goal(lat.sms.ms['p99'] < 1000)}).**"
    )


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{status} × {n:,}" for status, n in sorted(statuses.items())) or "none"


def latency_cpu_line(lat: Latency) -> str:
    cores = ", ".join(f"{name} {value:.2f}" for name, value in lat.cpu.items() if name != "generator")
    return (
        f"Cores used during the {lat.seconds:.0f} s of sending: {cores}; the generator {lat.generator_cores:.2f}. "
        f"The bench then waited {lat.wait_s:.0f} s for dispatch's SMS; dispatch opened cases at "
        f"{_n(lat.opened_per_s)}/s (between its first and its last)."
    )


def markdown(result: Result) -> str:
    lat = result.latency
    return "\n\n".join(
        [
            headline(result),
            "What: a whole Quanzu of real processes on this machine (`LocalSystem`: its own tansu broker, "
            f"{max(INTAKE_PROCESSES)} intake processes as production runs intake (replicas, each `quanzu serve "
            "intake` with one uvicorn worker; the generator spreads its connections over them as a load balancer "
            "would), one dispatch, feedback, the development SMS gateway) on a private embedded PostgreSQL, the "
            "demo district, and a source allowed "
            f"{RATE_LIMIT:,.0f} records/s. Records are contract §1 warnings of about "
            f"{len(Records('x' * 8, ('370202-011',), '2026-01-01T00:00:00+00:00').one(1, 1))} bytes, each with its "
            "own external_id and phone number, spread over the 12 demo areas and the risk levels "
            "(23% low, 41% medium, 25% high, 11% critical). The load generator (`tests/bench/load.py`: HTTP/1.1 "
            "keep-alive on raw asyncio streams, one process) runs on the same 2 cores as the services: its cores "
            "are in the tables, and " + ceiling_line(result)[0].lower() + ceiling_line(result)[1:],
            f"Latency, whole system running: {lat.rate:,.0f} single posts/s for {lat.seconds:.0f} s, open loop "
            f"(sent on schedule whether or not earlier answers came; {lat.connections} connections were needed), "
            "each time counted from the request's scheduled send. Dispatch's first actions are read from its "
            "tables: the case opened (`cases.opened_at`, when dispatch began handling the `warning.received` event) "
            "and the SMS accepted by the gateway (the `sms.send` deadline's `fired_at`, taken right after the "
            "gateway answered), both on this machine's clock. "
            f"Of {lat.sent:,} posts, {lat.intake.missing:,} had no answer 10 s after the last one was due; the answers "
            f"by status: {_statuses(lat.statuses)}. A `>` figure is a lower bound: that share of the requests had "
            "not completed when the measurement stopped, after waiting at least that long.",
            latency_table(result.latency),
            latency_cpu_line(result.latency),
            "Throughput, with dispatch and feedback stopped (the floor has no consumers either): the floor writes "
            "the same records straight to PostgreSQL (asyncpg `copy_records_to_table`, 1,000 per COPY, into a copy "
            "of intake's warnings table with its indexes) while producing their `warning.received` events straight "
            "to the broker (aiokafka, acks=all, no idempotence, the services' producer settings), no HTTP and no "
            "validation. Intake, one process and then both, is posted to by N connections each sending its next "
            f"request when the last was answered, {result.seconds:.0f} s per step after 1 s of warm-up, connections "
            "raised until throughput "
            "stopped rising by 5%. Cores are CPU seconds per second over the step (`intake`: both intake "
            "processes, the idle one's outbox relay included; `postgres`: every PostgreSQL "
            "process; `machine`: every core of the machine busy, other work included). After each step the "
            "bench waited for intake's outbox to be published (last column), so each step's records did reach the "
            "broker. `failed`: answers other than 202/200, broken connections, and batch items not accepted.",
            throughput_table(result),
            "Memory of each process: the peak resident set over its life (VmHWM) and the resident set at the end "
            "(dispatch and feedback: when they were stopped, after the latency run). Loading the code alone "
            f"(`import services.cli.main`, the first thing `quanzu serve` does) peaks at "
            f"{result.import_peak_kib / 1024:,.0f} MiB in a fresh interpreter: a peak near that was reached while "
            "starting, one above it under this load.",
            memory_table(result),
            f"Whole benchmark: {result.total_s:.0f} s. PostgreSQL {result.postgres}, embedded, stock settings.",
        ]
    )


def console(result: Result) -> str:
    return "\n\n".join(
        [
            headline(result),
            ceiling_line(result),
            latency_table(result.latency),
            f"Latency run: answers by status {_statuses(result.latency.statuses)}; "
            f"{result.latency.intake.missing:,} of {result.latency.sent:,} unanswered.",
            latency_cpu_line(result.latency),
            throughput_table(result),
            memory_table(result),
            f"A fresh interpreter importing services.cli.main peaks at {result.import_peak_kib / 1024:,.0f} MiB.",
            f"Whole benchmark: {result.total_s:.0f} s.",
        ]
    )
