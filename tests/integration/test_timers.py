"""The deadline engine on a real PostgreSQL: each deadline fires once, across replicas, crashes and failures."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import SessionFactory, make_session_factory, unit_of_work, write_behind
from shared.devinfra import wait_for
from shared.timers import Due, TimerEngine, cancel, deadlines_table, schedule, schedule_many, wake_trigger_sql
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


async def test_a_batch_handler_fires_a_rounds_deadlines_together_and_each_once(
    factory: SessionFactory, database_url: str
) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    refs = await add(factory, kind, datetime.now(UTC) - timedelta(seconds=1), 30)
    alone, batches = Recorder(kind), []

    async def batch(session: object, dues: Sequence[Due]) -> Mapping[int, Exception]:
        batches.append([d.ref for d in dues if d.kind == kind])
        return {}

    task = start(factory, database_url, alone, batch_handler=batch, batch_size=10)
    try:
        await wait_for(lambda: sum(map(len, batches)) == 30, timeout=20, message="30 deadlines in batches")
        await wait_for(lambda: _all_fired(factory, refs), timeout=10, message="the batches marked fired")
    finally:
        await stop(task)
    fired = Counter(ref for refs_ in batches for ref in refs_)
    assert set(fired) == set(refs) and set(fired.values()) == {1}
    assert max(map(len, batches)) > 1
    assert not alone.fired  # a round of more than one deadline goes to the batch handler


async def test_a_failing_batch_is_undone_and_fired_one_by_one(factory: SessionFactory, database_url: str) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC) - timedelta(seconds=1)
    refs = await add(factory, kind, now, 5)
    [broken] = await add(factory, kind, now)
    calls: Counter[uuid.UUID] = Counter()
    written_by_batch = f"{kind}-batch"

    async def batch(session: AsyncSession, dues: Sequence[Due]) -> Mapping[int, Exception]:
        await schedule(session, TABLE, written_by_batch, uuid.uuid4(), now + timedelta(days=1))
        if any(d.ref == broken for d in dues):
            raise RuntimeError("one of them cannot be fired")
        return {}

    async def handler(session: object, due: Due) -> None:
        if due.kind == kind:
            calls[due.ref] += 1
            if due.ref == broken:
                raise RuntimeError("boom")

    task = start(factory, database_url, handler, batch_handler=batch, max_attempts=1)
    try:
        await wait_for(lambda: _state(factory, broken), timeout=20, message="the broken one given up")
        await wait_for(lambda: _all_fired(factory, refs), timeout=10, message="the others fired")
    finally:
        await stop(task)
    assert {ref: calls[ref] for ref in refs} == dict.fromkeys(refs, 1)
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        kept = await conn.execute(sa.select(sa.func.count()).where(TABLE.c.kind == written_by_batch))
        assert kept.scalar_one() == 0  # what the failed batch wrote was rolled back with it


async def test_deadlines_a_batch_returns_as_not_fired_are_retried_alone(
    factory: SessionFactory, database_url: str
) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC) - timedelta(seconds=1)
    refs = await add(factory, kind, now, 5)
    [later] = await add(factory, kind, now)
    batched: Counter[uuid.UUID] = Counter()
    alone = Recorder(kind)

    async def batch(session: object, dues: Sequence[Due]) -> Mapping[int, Exception]:
        batched.update(d.ref for d in dues if d.kind == kind)
        return {d.id: RuntimeError("the provider is busy") for d in dues if d.ref == later}

    task = start(factory, database_url, alone, batch_handler=batch, max_attempts=2)
    try:
        await wait_for(lambda: alone.fired[later] == 1, timeout=20, message="the one not fired, tried again alone")
        await wait_for(lambda: _all_fired(factory, [*refs, later]), timeout=10, message="all marked fired")
    finally:
        await stop(task)
    assert {ref: batched[ref] for ref in refs} == dict.fromkeys(refs, 1)
    assert not any(alone.fired[ref] for ref in refs)
    assert batched[later] == 1
    assert await _state(factory, later) == ("the provider is busy", 1)  # retried after the engine's backoff


async def _all_fired(factory: SessionFactory, refs: list[uuid.UUID]) -> bool:
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        pending = sa.select(sa.func.count()).where(TABLE.c.ref.in_(refs), TABLE.c.fired_at.is_(None))
        return (await conn.execute(pending)).scalar_one() == 0


async def test_write_behind_holds_inserts_until_its_end_and_drops_them_if_it_raises(factory: SessionFactory) -> None:
    kind = f"k-{uuid.uuid4().hex[:6]}"
    later = datetime.now(UTC) + timedelta(days=1)
    kept, dropped, cancelled = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        count = sa.select(sa.func.count()).where(TABLE.c.kind == kind, TABLE.c.fired_at.is_(None))
        async with write_behind(session):
            await schedule_many(session, TABLE, [(kind, kept, later), (kind, cancelled, later)])
            assert (await conn.execute(count)).scalar_one() == 0  # held
            await cancel(session, TABLE, cancelled)  # a cancel writes what is held first, and sees it
            assert (await conn.execute(count)).scalar_one() == 1  # ... at the end of the block
        assert (await conn.execute(count)).scalar_one() == 1  # kept only: the cancel ran
        with pytest.raises(RuntimeError):
            async with write_behind(session):
                await schedule(session, TABLE, kind, dropped, later)
                raise RuntimeError("the batch failed")
        await schedule(session, TABLE, kind, dropped, later)  # after the block: written at once
        assert (await conn.execute(count)).scalar_one() == 2
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        rows = await conn.execute(sa.select(TABLE.c.ref).where(TABLE.c.kind == kind, TABLE.c.fired_at.is_(None)))
        assert sorted(r.ref for r in rows) == sorted([kept, dropped])


async def test_cancels_in_a_block_retire_what_was_scheduled_before_them_and_nothing_after(
    factory: SessionFactory,
) -> None:
    """Inside `write_behind`, cancellations wait for the end of the block (one statement for them all); they must
    still retire exactly what a cancellation made at once would have: what was pending or held when it was asked
    for, of its kinds, and nothing scheduled after it."""
    kind, other = f"k-{uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:6]}"
    later = datetime.now(UTC) + timedelta(days=1)
    x, y, z, w = (uuid.uuid4() for _ in range(4))
    async with unit_of_work(factory) as session:
        await schedule_many(session, TABLE, [(kind, x, later), (other, x, later), (kind, y, later)])
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        pending = sa.select(sa.func.count()).where(TABLE.c.ref.in_([x, y]), TABLE.c.fired_at.is_(None))
        async with write_behind(session):
            await cancel(session, TABLE, x, (kind,))
            await cancel(session, TABLE, y)
            assert (await conn.execute(pending)).scalar_one() == 3  # not yet: at the end of the block
            await schedule(session, TABLE, kind, x, later)  # after the cancel: stays
            await schedule(session, TABLE, kind, z, later)
            await cancel(session, TABLE, z)  # held, then cancelled
            await schedule(session, TABLE, kind, w, later)
            await cancel(session, TABLE, w)
            await schedule(session, TABLE, other, w, later)  # after its cancel: stays
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        rows = await conn.execute(
            sa.select(TABLE.c.ref, TABLE.c.kind, TABLE.c.fired_at.is_(None), TABLE.c.last_error).where(
                TABLE.c.ref.in_([x, y, z, w])
            )
        )
        assert sorted(map(tuple, rows), key=str) == sorted(
            [
                (x, kind, False, "cancelled"),
                (x, other, True, None),
                (y, kind, False, "cancelled"),
                (x, kind, True, None),
                (z, kind, False, "cancelled"),
                (w, kind, False, "cancelled"),
                (w, other, True, None),
            ],
            key=str,
        )


async def test_a_cancel_outside_a_block_is_made_at_once(factory: SessionFactory) -> None:
    kind, ref = f"k-{uuid.uuid4().hex[:6]}", uuid.uuid4()
    async with unit_of_work(factory) as session:
        await schedule(session, TABLE, kind, ref, datetime.now(UTC) + timedelta(days=1))
        await cancel(session, TABLE, ref)
        conn = await session.connection()
        rows = await conn.execute(sa.select(TABLE.c.last_error).where(TABLE.c.ref == ref))
        assert [r.last_error for r in rows] == ["cancelled"]
