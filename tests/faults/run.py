"""One fault run from start to end: infrastructure, district, load and responders, faults, the fault-free
comparison run, and the checks. `test_faults.py` runs it; `report.py` writes its figures."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.cli.system import LocalSystem
from shared.devinfra import wait_for
from tests.faults import checks, draws, observe
from tests.faults.district import AREAS, LATE_AFTER_S, SOURCES, District, provision
from tests.faults.load import WarningLoad
from tests.faults.observe import Database, GatewayRecord
from tests.faults.pg import PrivatePostgres
from tests.faults.plan import Plan, faults_from_env
from tests.faults.responders import Responders
from tests.faults.scenario import FaultRecord, RunState, caught_up, inject_all

FAULT_FREE_RATE = 10.0  # posts per second of the comparison run: it has nothing to wait out
GATEWAY_READ_S = 5.0


@dataclass
class Outcome:
    plan: Plan
    seed: int
    started: datetime
    wall_s: float = 0.0
    acknowledged: int = 0
    acknowledged_fault_free: int = 0
    lost: int = 0
    duplicated: int = 0
    faults: list[FaultRecord] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)
    connection_failures: int = 0
    redelivered: int = 0
    poison: int = 0
    sms_messages: int = 0
    deadlines_fired: dict[str, int] = field(default_factory=dict)
    cases: int = 0
    responses: dict[str, int] = field(default_factory=dict)  # what the responders did, by step
    rates: dict[str, tuple[int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def slowest(self) -> FaultRecord | None:
        return max(self.faults, key=lambda f: (not f.caught_up, f.recovery_s), default=None)

    @property
    def max_recovery(self) -> str:
        return self.slowest.recovery if self.slowest else "–"


@contextlib.asynccontextmanager
async def background(*jobs: Awaitable[None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def read_gateway(gateway: GatewayRecord, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                await gateway.read(client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), GATEWAY_READ_S)


async def fault_run(plan: Plan, seed: int, home: Path) -> Outcome:
    outcome = Outcome(plan, seed, datetime.now(UTC))
    started = time.monotonic()
    pg = PrivatePostgres(home / "pg")
    admin_url = await asyncio.to_thread(pg.start)
    try:
        # INFO: the consumers' rebalances and commits are in the processes' logs. The database stays in the
        # server's data directory, which the test removes only when the run passed: a failed run can be read back.
        system = LocalSystem(
            home=home / "system",
            pg_admin_url=admin_url,
            database="quanzu_faults",
            replicas={"dispatch": 2},
            env={"QUANZU_LOG_LEVEL": "INFO"},
            keep_database=True,
        )
        async with system:
            db = Database(system.database_url)
            await db.open()
            try:
                await _run(system, pg, db, outcome)
            finally:
                await db.close()
    finally:
        await asyncio.to_thread(pg.stop)
    outcome.wall_s = time.monotonic() - started
    return outcome


async def _run(system: LocalSystem, pg: PrivatePostgres, db: Database, outcome: Outcome) -> None:
    plan, seed = outcome.plan, outcome.seed
    district = await provision(system.settings)
    run = str(seed)
    faulty = WarningLoad(system.url("intake"), district.keys[SOURCES[0]], warning_source(seed, run, phase=1))
    fault_free = WarningLoad(system.url("intake"), district.keys[SOURCES[1]], warning_source(seed, run, phase=2))
    ids: dict[str, int] = {}

    def warning_n(warning_id: str) -> int | None:
        if warning_id not in ids:
            ids.update({a.warning_id: a.n for load in (faulty, fault_free) for a in load.acked.values()})
        return ids.get(warning_id)

    responders = Responders(system.urls("dispatch"), system.url("feedback"), district.crew, seed=seed,
                            warning_n=warning_n, late_after_s=LATE_AFTER_S)  # fmt: skip
    gateway = GatewayRecord(system.url("smsgw"))
    state = RunState(seed, plan, system, pg, db, gateway, district, faulty)
    stop_load, stop_all = asyncio.Event(), asyncio.Event()
    try:
        async with background(responders.run(stop_all), read_gateway(gateway, stop_all)):
            async with background(faulty.run(plan.rate, stop_load)) as (load,):
                await inject_all(state, faults_from_env())
                stop_load.set()
                await load
            await faulty.drain(plan.recovery_timeout_s)
            await fault_free.run(FAULT_FREE_RATE, asyncio.Event(), count=faulty.posted)
            await fault_free.drain(plan.recovery_timeout_s)
            await settle(state, [*faulty.acked_before(time.time()), *fault_free.acked_before(time.time())])
            stop_all.set()
        try:
            await check(system, db, district, gateway, (faulty, fault_free), outcome)
        except Exception:  # still report the run's figures; the test fails on this problem
            outcome.problems.append("the checks could not run: " + traceback.format_exc(limit=-3))
    finally:
        outcome.faults = state.faults
        outcome.acknowledged, outcome.acknowledged_fault_free = len(faulty.acked), len(fault_free.acked)
        outcome.answers = dict(faulty.stats.statuses)
        outcome.connection_failures = faulty.stats.connection_failures
        outcome.redelivered, outcome.poison = state.redelivered, len(state.poisons)
        outcome.problems += state.problems + faulty.stats.violations + fault_free.stats.violations
        outcome.problems += responders.stats.violations
        outcome.responses = dict(responders.stats.actions) | {"retried": responders.stats.retries}
        if gateway.gaps:
            outcome.problems.append(f"the gateway's record was read with {gateway.gaps} gap(s)")
        await asyncio.gather(faulty.close(), fault_free.close(), responders.close())


async def check(
    system: LocalSystem,
    db: Database,
    district: District,
    gateway: GatewayRecord,
    loads: tuple[WarningLoad, WarningLoad],
    outcome: Outcome,
) -> None:
    """Read everything back and check it (`checks.py`); the figures go into `outcome`."""
    async with httpx.AsyncClient(timeout=10) as client:
        await gateway.read(client)
    rates = await rates_by_source(system, district)
    snap = await observe.snapshot(db, gateway.messages.values(), datetime.now(UTC))
    faulty, fault_free = (
        checks.Phase(name, source, {a.n: a.warning_id for a in load.acked.values()})
        for name, source, load in zip(("faulty", "fault-free"), SOURCES, loads, strict=True)
    )
    findings = checks.check_all(faulty, fault_free, snap)
    outcome.rates = checks.rate_counts(rates, SOURCES[0])
    checks.rates_match(outcome.rates, checks.rate_counts(rates, SOURCES[1]), findings)
    outcome.problems += findings.problems + await observe.phantom_effects(db)
    outcome.lost, outcome.duplicated = len(findings.lost), len(findings.duplicated)
    outcome.cases = len(snap.cases)
    outcome.sms_messages = len(snap.messages)
    outcome.deadlines_fired = await deadlines_fired(db)


def warning_source(seed: int, run: str, phase: int) -> Callable[[int], dict[str, Any]]:
    def record(n: int) -> dict[str, Any]:
        plan = draws.warning_plan(seed, n, AREAS)
        return draws.warning_record(plan, run=run, phase=phase, issued_at=datetime.now(UTC))

    return record


async def settle(state: RunState, acked: list[str]) -> None:
    """Until every case is closed, in dispatch and in feedback, with nothing left in any backlog."""

    async def settled() -> bool:
        try:
            return await observe.open_cases(state.db, acked) == 0
        except Exception:
            return False

    try:
        await wait_for(settled, timeout=state.plan.settle_timeout_s, interval=0.5, message="every case to close")
    except TimeoutError:
        for case in await observe.describe_open_cases(state.db, acked):
            state.problems.append(f"still open at the end: {case}")
    behind = await caught_up(state, time.time())
    if behind is not None:
        state.problems.append(f"every case is closed, but work is left: {behind}")


async def rates_by_source(system: LocalSystem, district: District) -> dict[str, Any]:
    crew = district.crew
    async with httpx.AsyncClient(timeout=60) as client:
        login = await client.post(
            system.url("dispatch") + "/v1/auth/token",
            data={"grant_type": "password", "username": crew.admin, "password": crew.password},
        )
        login.raise_for_status()
        now = datetime.now(UTC)
        response = await client.get(
            system.url("feedback") + "/v1/stats/rates",
            params={"group_by": "source", "from": (now - timedelta(hours=2)).isoformat(),
                    "to": (now + timedelta(hours=1)).isoformat()},
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )  # fmt: skip
        response.raise_for_status()
        rates: dict[str, Any] = response.json()
        return rates


async def deadlines_fired(db: Database) -> dict[str, int]:
    rows = await db.fetch(
        """SELECT kind, count(*) AS fired FROM dispatch.deadlines
            WHERE fired_at IS NOT NULL AND last_error IS DISTINCT FROM 'cancelled' GROUP BY kind ORDER BY kind"""
    )
    return {r["kind"]: r["fired"] for r in rows}
