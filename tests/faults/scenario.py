"""The fault run: a whole Quanzu under load, with responders answering, while faults are injected one after
the other; then the same warnings again without faults, to compare with.

Each fault is held for its duration (sleeping is the point there); afterwards nothing waits by sleeping: the
run polls the database until the work that existed when the fault ended is done, and that time is the fault's
recovery time.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from services.cli.system import LocalSystem
from shared.devinfra import wait_for
from shared.events import Topic
from tests.faults import chaos
from tests.faults.district import District
from tests.faults.load import WarningLoad
from tests.faults.observe import Backlog, Database, GatewayRecord, backlog
from tests.faults.pg import PrivatePostgres
from tests.faults.plan import FAULT_KEYS, Plan

TOPICS = (Topic.WARNINGS_RECEIVED, Topic.DISPATCH_EVENTS, Topic.FEEDBACK_OUTCOMES, Topic.REGISTRY_EVENTS)
KILLED = ("intake", "dispatch", "dispatch-2", "feedback")
PROGRESS_S = 15.0  # how often a recovery that takes long says how far behind it is


@dataclass
class FaultRecord:
    name: str
    held_s: float  # from the fault's start to its end (a restart's readiness, the broker's or database's return)
    recovery_s: float  # from its end until the work that existed then was done (or the bound, if it was not)
    detail: str = ""
    caught_up: bool = True  # False: still behind when `recovery_timeout_s` ran out

    @property
    def recovery(self) -> str:
        return f"{self.recovery_s:.1f} s" if self.caught_up else f"> {self.recovery_s:.0f} s"


@dataclass
class RunState:
    seed: int
    plan: Plan
    system: LocalSystem
    pg: PrivatePostgres
    db: Database
    gateway: GatewayRecord
    district: District
    load: WarningLoad
    faults: list[FaultRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # promises broken while faults were on
    poisons: list[chaos.Poison] = field(default_factory=list)
    redelivered: int = 0
    unavailable_during_outage: int = 0
    replayed: str = ""

    @property
    def rng(self) -> random.Random:
        return random.Random(f"{self.seed}:{len(self.faults)}")


async def caught_up(state: RunState, moment: float) -> Backlog | None:
    """Wait until the work that existed at `moment` (time.time()) is done: None, or what was left at the timeout."""
    acked = state.load.acked_before(moment)
    at = datetime.fromtimestamp(moment, UTC)
    last: list[Backlog] = []
    shown = time.monotonic()

    async def clear() -> bool:
        nonlocal shown
        try:
            found = await backlog(state.db, acked, at)
        except Exception:  # the database may still be coming back
            return False
        last[:] = [found]
        if not found.clear and time.monotonic() - shown > PROGRESS_S:
            print(f"[faults]   still behind: {found}", file=sys.stderr, flush=True)
            shown = time.monotonic()
        return found.clear

    try:
        await wait_for(clear, timeout=state.plan.recovery_timeout_s, interval=1, message="the backlog to clear")
    except TimeoutError:
        return last[0] if last else Backlog(-1, -1, -1, -1)
    return None


@dataclass
class Injected:
    """What an injected fault reports, and what more than the backlog it must wait for to be over (its detail)."""

    detail: str = ""
    settle: Callable[[], Awaitable[str]] | None = None


Injector = Callable[[], Awaitable[Injected]]


async def fault(state: RunState, name: str, inject: Injector) -> None:
    """Wait a random moment, inject the fault (which returns once it is over), then time the recovery."""
    low, high = state.plan.gap_s
    await asyncio.sleep(state.rng.uniform(low, high))
    started = time.monotonic()
    print(f"[faults] {name} ...", file=sys.stderr, flush=True)
    injected = await inject()
    ended, ended_wall = time.monotonic(), time.time()
    behind = await caught_up(state, ended_wall)
    detail = injected.detail + (await injected.settle() if injected.settle else "")
    if behind is not None:
        # Not a broken promise by itself (a slow machine is slow): the end of the run checks that nothing was lost.
        detail += f" (still behind: {behind})"
    record = FaultRecord(name, ended - started, time.monotonic() - ended, detail, caught_up=behind is None)
    state.faults.append(record)
    print(f"[faults] {name}: held {record.held_s:.1f}s, recovered in {record.recovery} {detail}",
          file=sys.stderr, flush=True)  # fmt: skip


# --- the faults -------------------------------------------------------------------------------------------------


def kill(state: RunState, name: str) -> Injector:
    async def inject() -> Injected:
        await state.system.restart(name)
        return Injected()

    return inject


def pause_broker(state: RunState) -> Injector:
    async def inject() -> Injected:
        state.system.pause_broker()
        try:
            await asyncio.sleep(state.plan.broker_pause_s)
        finally:
            state.system.resume_broker()
        return Injected()

    return inject


def lose_broker(state: RunState) -> Injector:
    """The broker comes back empty; the operator republishes the outboxes since a moment before the loss."""

    async def inject() -> Injected:
        since = datetime.now(UTC) - timedelta(seconds=state.plan.replay_margin_s)
        await state.system.lose_broker()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli.main", "outbox", "replay", "--since", since.isoformat(),
            env=state.system.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        if process.returncode != 0:
            state.problems.append(f"quanzu outbox replay failed: {out.decode(errors='replace')[-500:]}")
        state.replayed = " ".join(out.decode(errors="replace").split())
        return Injected(f"(replayed: {state.replayed})")

    return inject


def restart_postgres(state: RunState) -> Injector:
    """PostgreSQL crashes and is down for a while: intake must answer 503 with Retry-After, never 500."""

    async def inject() -> Injected:
        before = state.load.stats.statuses[503]
        await asyncio.to_thread(state.pg.crash)
        try:
            await asyncio.sleep(state.plan.postgres_down_s / 2)
            async with httpx.AsyncClient(timeout=10) as client:
                ready = await client.get(state.system.url("intake") + "/readyz")
            if ready.status_code != 503 or "retry-after" not in ready.headers:
                state.problems.append(f"intake /readyz answered {ready.status_code} with the database down")
            await asyncio.sleep(state.plan.postgres_down_s / 2)
        finally:
            await asyncio.to_thread(state.pg.start_again)
        state.unavailable_during_outage = state.load.stats.statuses[503] - before
        if state.unavailable_during_outage == 0:
            state.problems.append("no post was answered 503 while the database was down: the outage was not seen")
        return Injected(f"({state.unavailable_during_outage} posts answered 503)")

    return inject


def sms_faults(state: RunState) -> Injector:
    """The gateway slow (5 s, past the client's 5 s attempt timeout) and failing half its requests, then only
    failing half; messages it records after the client gave up must not be sent again."""

    async def inject() -> Injected:
        half = state.plan.sms_faults_s / 2
        async with httpx.AsyncClient(timeout=10) as client:
            before = await state.gateway.counters(client)
            await state.gateway.control(client, delay_s=5, fail_rate=0.5, seed=state.seed)
            try:
                await asyncio.sleep(half)
                await state.gateway.control(client, fail_rate=0.5)
                await asyncio.sleep(half)
            finally:
                await state.gateway.control(client)
            after = await state.gateway.counters(client)
        sent, failed = after["requests"] - before["requests"], after["failures"] - before["failures"]
        return Injected(f"({sent} requests, {failed} failed)")

    return inject


def redeliver(state: RunState) -> Injector:
    async def inject() -> Injected:
        state.redelivered = await chaos.redeliver(state.system.kafka_bootstrap, TOPICS, state.rng)
        return Injected(f"({state.redelivered} messages delivered again)")

    return inject


def poison(state: RunState) -> Injector:
    """Poison on every partition; over when every consumer group dead-lettered it and committed past it."""

    async def inject() -> Injected:
        bootstrap = state.system.kafka_bootstrap
        state.poisons = await chaos.inject_poison(bootstrap, TOPICS)
        want = chaos.expected_dead_letters(state.poisons)
        dead: set[tuple[str, str]] = set()
        stuck: list[str] = []

        async def handled() -> bool:
            nonlocal dead, stuck
            dead = await chaos.dead_lettered(bootstrap, TOPICS)
            stuck = await chaos.stuck_behind_poison(bootstrap, state.poisons)
            return want <= dead and not stuck

        async def settle() -> str:
            try:
                await wait_for(handled, timeout=state.plan.recovery_timeout_s, interval=2, message="poison handled")
            except TimeoutError:
                missing = sorted({f"{marker.split(':')[0]}@{group}" for marker, group in want - dead})
                state.problems.append(f"poison not dead-lettered: {missing}; partitions stuck behind it: {stuck}")
            return f" ({len(want & dead)} of {len(want)} dead letters)"

        return Injected(f"({len(state.poisons)} poison messages)", settle)

    return inject


async def inject_all(state: RunState, keys: tuple[str, ...] = FAULT_KEYS) -> None:
    """Every kind of fault (of `keys`), in turn."""
    plan = state.plan
    if "kill" in keys:
        for _ in range(plan.kill_rounds):
            for name in state.rng.sample(KILLED, len(KILLED)):
                await fault(state, f"SIGKILL {name}", kill(state, name))
    faults = {
        "pause": (f"broker paused {plan.broker_pause_s:.0f}s", pause_broker),
        "lose": ("broker lost, outbox replay", lose_broker),
        "postgres": (f"PostgreSQL down {plan.postgres_down_s:.0f}s", restart_postgres),
        "sms": (f"SMS gateway slow and failing {plan.sms_faults_s:.0f}s", sms_faults),
        "redeliver": ("every message delivered twice, out of order", redeliver),
        "poison": ("poison on every partition", poison),
    }
    for key, (name, make) in faults.items():
        if key in keys:
            await fault(state, name, make(state))
