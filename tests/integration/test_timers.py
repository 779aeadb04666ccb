"""The deadline engine on a real PostgreSQL: each deadline fires once, across replicas, crashes and failures."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import SessionFactory, make_session_factory, unit_of_work
from shared.devinfra import wait_for
from shared.timers import Due, TimerEngine, deadlines_table, schedule, wake_trigger_sql
from tests.conftest import scratch_schema

SCHEMA = "timers_test"
TABLE = deadlines_table(sa.MetaData(), SCHEMA)


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with scratch_schema(database_url, SCHEMA, TABLE.metadata, ddl=wake_trigger_sql(SCHEMA)) as engine:
        yield engine


@pytest.fixture
def factory(engine: AsyncEngine) -> SessionFactory:
    return make_session_factory(engine)


async def add(factory: SessionFactory, kind: str, due_at: datetime, n: int = 1) -> list[uuid.UUID]:
    refs = [uuid.uuid4() for _ in range(n)]
    async with unit_of_work(factory) as session:
        for ref in refs:
            await schedule(session, TABLE, kind, ref, due_at)
    return refs


class Recorder:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fired: Counter[uuid.UUID] = Counter()

    async def __call__(self, session: object, due: Due) -> None:
        if due.kind == self.kind:
            self.fired[due.ref] += 1


def start(factory: SessionFactory, database_url: str, handler: object, **kwargs: object) -> asyncio.Task[None]:
    timer = TimerEngine(factory=factory, database_url=database_url, table=TABLE, handler=handler, **kwargs)  # type: ignore[arg-type]
    return asyncio.create_task(timer.run())


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_due_deadlines_fire_once_each_and_later_ones_at_their_time(
    factory: SessionFactory, database_url: str
) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    past = await add(factory, kind, now - timedelta(seconds=5), 20)
    soon = await add(factory, kind, now + timedelta(seconds=1), 5)
    recorder = Recorder(kind)
    task = start(factory, database_url, recorder)
    try:
        await wait_for(lambda: len(recorder.fired) == 25, timeout=20, message="all deadlines to fire")
    finally:
        await stop(task)
    assert set(recorder.fired) == set(past + soon)
    assert set(recorder.fired.values()) == {1}


async def test_an_idle_engine_is_woken_by_a_new_deadline(factory: SessionFactory, database_url: str) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    recorder = Recorder(kind)
    # It would otherwise sleep a full minute: firing within the poll below proves the NOTIFY woke it.
    task = start(factory, database_url, recorder, max_sleep_s=60)
    try:
        await wait_for(lambda: _listening(factory), timeout=10, message="the engine to LISTEN")
        [ref] = await add(factory, kind, datetime.now(UTC) + timedelta(milliseconds=200))
        await wait_for(lambda: recorder.fired[ref] == 1, timeout=15, message="the woken engine to fire")
    finally:
        await stop(task)


async def _listening(factory: SessionFactory) -> bool:
    # a fresh transaction each time: statistics views are a snapshot within one
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%timers_test%'"
        return bool((await conn.execute(sa.text(query))).scalar_one())


async def test_two_replicas_fire_each_deadline_exactly_once(factory: SessionFactory, database_url: str) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    refs = await add(factory, kind, datetime.now(UTC) - timedelta(seconds=1), 1000)
    first, second = Recorder(kind), Recorder(kind)
    tasks = [start(factory, database_url, first, batch_size=50), start(factory, database_url, second, batch_size=50)]
    try:
        await wait_for(lambda: len(first.fired) + len(second.fired) >= 1000, timeout=60, message="1000 deadlines")
    finally:
        await stop(*tasks)
    together = first.fired + second.fired
    assert set(together) == set(refs)
    assert set(together.values()) == {1}
    assert first.fired and second.fired, "both replicas should have taken a share"


async def test_a_crash_before_commit_leaves_the_deadline_to_fire_again(
    factory: SessionFactory, database_url: str
) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    [ref] = await add(factory, kind, datetime.now(UTC) - timedelta(seconds=1))
    entered = asyncio.Event()

    async def hang(session: object, due: Due) -> None:
        if due.kind == kind:
            entered.set()
            await asyncio.Event().wait()  # the process dies here, mid-transaction

    crashing = start(factory, database_url, hang)
    await asyncio.wait_for(entered.wait(), 15)
    await stop(crashing)  # its transaction rolls back: nothing was marked fired
    recorder = Recorder(kind)
    task = start(factory, database_url, recorder)
    try:
        await wait_for(lambda: recorder.fired[ref] == 1, timeout=15, message="the restarted engine to fire it")
    finally:
        await stop(task)


async def test_a_failing_handler_is_retried_alone_then_given_up(factory: SessionFactory, database_url: str) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC) - timedelta(seconds=1)
    [flaky] = await add(factory, kind, now)
    [broken] = await add(factory, kind, now)
    [fine] = await add(factory, kind, now)
    calls: Counter[uuid.UUID] = Counter()

    async def handler(session: object, due: Due) -> None:
        if due.kind != kind:
            return
        calls[due.ref] += 1
        if due.ref == broken or (due.ref == flaky and calls[flaky] == 1):
            raise RuntimeError("boom")

    task = start(factory, database_url, handler, max_attempts=2)
    try:
        await wait_for(lambda: calls[flaky] == 2 and calls[broken] == 2, timeout=30, message="retries")
        await wait_for(lambda: _state(factory, broken), timeout=10, message="the broken one given up")
    finally:
        await stop(task)
    assert calls[fine] == 1
    assert await _state(factory, broken) == ("boom", 2)


async def _state(factory: SessionFactory, ref: uuid.UUID) -> tuple[str, int] | None:
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        row = (
            await conn.execute(
                sa.select(TABLE.c.last_error, TABLE.c.attempts).where(TABLE.c.ref == ref, TABLE.c.fired_at.is_not(None))
            )
        ).first()
    return (row[0], row[1]) if row else None
