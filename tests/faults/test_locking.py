"""Deadlines and members' actions on the same task, on a real PostgreSQL (the product fixes the fault run led to).

A member's 签收 locks the task and then retires its acknowledgement deadline, while the deadline engine holds that
deadline's row and wants the task: cancelling must not wait for the engine (the two would deadlock, and the
member got a 500). And a deadlock that does happen must not use up one of a deadline's attempts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import SessionFactory, make_session_factory, unit_of_work
from shared.devinfra import wait_for
from shared.timers import Due, TimerEngine, cancel, deadlines_table, schedule
from tests.conftest import scratch_schema

SCHEMA = "faults_locking"
METADATA = sa.MetaData()
DEADLINES = deadlines_table(METADATA, SCHEMA)
ITEMS = sa.Table(
    "items", METADATA, sa.Column("id", sa.Uuid, primary_key=True), sa.Column("status", sa.Text), schema=SCHEMA
)


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with scratch_schema(database_url, SCHEMA, METADATA, pool_size=4) as engine:
        yield engine


@pytest.fixture
def factory(engine: AsyncEngine) -> SessionFactory:
    return make_session_factory(engine)


async def new_item(factory: SessionFactory, kind: str) -> uuid.UUID:
    item = uuid.uuid4()
    async with unit_of_work(factory) as session:
        await (await session.connection()).execute(sa.insert(ITEMS).values(id=item, status="open"))
        await schedule(session, DEADLINES, kind, item, datetime.now(UTC) - timedelta(seconds=1))
    return item


async def deadline(factory: SessionFactory, item: uuid.UUID) -> Any:
    async with unit_of_work(factory) as session:
        conn = await session.connection()
        return (await conn.execute(sa.select(DEADLINES).where(DEADLINES.c.ref == item))).one()


async def test_a_member_retires_a_deadline_the_engine_is_firing_without_waiting_and_the_engine_sees_the_change(
    factory: SessionFactory, database_url: str
) -> None:
    kind = f"ack-{uuid.uuid4().hex[:6]}"
    item = await new_item(factory, kind)
    claimed, go = asyncio.Event(), asyncio.Event()
    effects: list[str] = []

    async def handler(session: AsyncSession, due: Due) -> None:
        claimed.set()  # the engine holds the deadline's row from here on
        await go.wait()
        conn = await session.connection()
        status = (await conn.execute(sa.select(ITEMS.c.status).where(ITEMS.c.id == due.ref).with_for_update())).scalar()
        if status == "open":
            effects.append("breach")

    timer = TimerEngine(factory=factory, database_url=database_url, table=DEADLINES, handler=handler, kinds=(kind,))
    firing = asyncio.create_task(timer.fire_due())
    try:
        await asyncio.wait_for(claimed.wait(), 30)
        async with unit_of_work(factory) as member:  # 签收: lock the task, change it, retire its deadline
            conn = await member.connection()
            await conn.execute(sa.select(ITEMS.c.id).where(ITEMS.c.id == item).with_for_update())
            await conn.execute(sa.update(ITEMS).where(ITEMS.c.id == item).values(status="acked"))
            await asyncio.wait_for(cancel(member, DEADLINES, item), 10)
            left = await conn.execute(sa.select(DEADLINES.c.last_error).where(DEADLINES.c.ref == item))
            assert [r.last_error for r in left] == [None]  # the row the engine holds is left to it
        go.set()
        assert (await asyncio.wait_for(firing, 30)).claimed == 1
    finally:
        go.set()
        firing.cancel()
    assert effects == []  # the engine's handler saw the 签收
    row = await deadline(factory, item)
    assert row.fired_at is not None and row.last_error is None


class Deadlocked(Exception):
    sqlstate = "40P01"  # as asyncpg's DeadlockDetectedError carries it


async def test_a_deadlock_in_a_handler_does_not_use_up_an_attempt(factory: SessionFactory, database_url: str) -> None:
    kind = f"due-{uuid.uuid4().hex[:6]}"
    item = await new_item(factory, kind)
    calls: list[int] = []

    async def handler(session: AsyncSession, due: Due) -> None:
        calls.append(due.attempts)
        if len(calls) <= 3:
            raise Deadlocked("deadlock detected")

    timer = TimerEngine(
        factory=factory, database_url=database_url, table=DEADLINES, handler=handler, kinds=(kind,), max_attempts=2
    )
    task = asyncio.create_task(timer.run())

    async def fired() -> Any:
        row = await deadline(factory, item)
        return row if row.fired_at is not None else None

    try:
        row = await wait_for(fired, timeout=30, message="the deadline to fire after three deadlocks")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert calls == [0, 0, 0, 0]  # four tries, none of them counted as a failed attempt
    assert row.attempts == 0
