"""Durable deadlines: rows in PostgreSQL, fired exactly once by whichever replica claims them first.

- Claimed with `FOR UPDATE SKIP LOCKED` in the transaction that runs the handler and marks them fired,
  so any number of replicas can run, each deadline's effect commits once, and a crash before the commit
  leaves it to be fired again (by this replica after a restart, or by another at once).
- The engine sleeps until the next due time, and is woken early when a nearer deadline is written
  (a statement trigger NOTIFYs on insert): no polling interval to be late by. New work is acted on when
  its event arrives; timers are only for what must happen later.
- A handler that raises is retried with backoff in its own savepoint, without holding up the others;
  after `max_attempts` the deadline is marked fired with its error, and logged, so it cannot loop forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import SessionFactory, is_database_unavailable, listen, unit_of_work
from shared.scope import system_settings

log = logging.getLogger(__name__)

LATENESS = Histogram(
    "quanzu_deadline_lateness_seconds",
    "How late deadlines fire: fire time minus due time",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FIRED = Counter("quanzu_deadlines_fired_total", "Deadlines fired, by kind and result", ["kind", "result"])


def deadlines_table(metadata: sa.MetaData, schema: str) -> sa.Table:
    return sa.Table(
        "deadlines",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("ref", UUID(as_uuid=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Index(f"ix_{schema}_deadlines_pending", "due_at", postgresql_where=sa.text("fired_at IS NULL")),
        # An engine of some kinds only (the SMS senders) finds its next deadline here; by due_at alone it would walk
        # every pending deadline of the other kinds, a whole backlog of escalations on each wake-up.
        sa.Index(f"ix_{schema}_deadlines_pending_kind", "kind", "due_at", postgresql_where=sa.text("fired_at IS NULL")),
        sa.Index(f"ix_{schema}_deadlines_ref", "ref"),
        schema=schema,
    )


def channel(schema: str) -> str:
    return f"quanzu_deadlines_{schema}"


def notify_trigger_sql(schema: str) -> list[str]:
    """DDL for migrations: wake the engines when a transaction that wrote deadlines commits."""
    return [
        f"""CREATE OR REPLACE FUNCTION {schema}.deadlines_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{channel(schema)}', ''); RETURN NULL; END $$""",
        f"""CREATE TRIGGER deadlines_notify AFTER INSERT ON {schema}.deadlines
            FOR EACH STATEMENT EXECUTE FUNCTION {schema}.deadlines_notify()""",
    ]


@dataclass(frozen=True)
class Due:
    id: int
    kind: str
    ref: uuid.UUID
    due_at: datetime
    attempts: int


async def schedule(session: AsyncSession, table: sa.Table, kind: str, ref: uuid.UUID, due_at: datetime) -> None:
    conn = await session.connection()
    await conn.execute(sa.insert(table).values(kind=kind, ref=ref, due_at=due_at))


async def schedule_many(
    session: AsyncSession, table: sa.Table, deadlines: list[tuple[str, uuid.UUID, datetime]]
) -> None:
    """Several deadlines in one statement (a task's due and acknowledgement deadlines: one round trip, not two)."""
    if deadlines:
        conn = await session.connection()
        await conn.execute(sa.insert(table), [{"kind": k, "ref": r, "due_at": d} for k, r, d in deadlines])


async def cancel(session: AsyncSession, table: sa.Table, ref: uuid.UUID, kinds: tuple[str, ...] | None = None) -> int:
    """Retire the pending deadlines of `ref` (a task done in time needs no timer).

    A deadline an engine is firing right now (its row locked) is left to the engine: waiting for it would deadlock,
    since the engine's handler waits for the task or case this caller has locked. It came due before this change
    committed, and its handler, which locks the task and case after this transaction, sees the state as it now is.
    """
    pending = sa.select(table.c.id).where(table.c.ref == ref, table.c.fired_at.is_(None))
    if kinds is not None:
        pending = pending.where(table.c.kind.in_(kinds))
    stmt = (
        sa.update(table)
        .where(table.c.id.in_(pending.with_for_update(skip_locked=True).scalar_subquery()))
        .values(fired_at=sa.func.now(), last_error="cancelled")
    )
    conn = await session.connection()
    return int((await conn.execute(stmt)).rowcount or 0)


Handler = Callable[[AsyncSession, Due], Awaitable[None]]


class TimerEngine:
    def __init__(
        self,
        *,
        factory: SessionFactory,
        database_url: str,
        table: sa.Table,
        handler: Handler,
        batch_size: int = 200,
        max_batch_s: float = 1.0,
        max_sleep_s: float = 30.0,
        max_attempts: int = 5,
        kinds: tuple[str, ...] | None = None,
        exclude_kinds: tuple[str, ...] = (),
    ) -> None:
        self.factory = factory
        self.database_url = database_url
        self.table = table
        self.handler = handler
        self.batch_size = batch_size
        self.max_batch_s = max_batch_s
        self.max_sleep_s = max_sleep_s
        self.max_attempts = max_attempts
        # Separate engines for separate kinds: a slow SMS provider must not hold up escalations.
        self.kinds = kinds
        self.exclude_kinds = exclude_kinds
        self._wake = asyncio.Event()

    async def run(self) -> None:
        listener = asyncio.create_task(listen(self.database_url, channel(str(self.table.schema)), self._wake.set))
        try:
            while True:
                try:
                    if await self.fire_due():
                        continue
                    delay = await self._seconds_to_next()
                except Exception as exc:
                    log.warning("deadlines: %s; retrying", exc)
                    delay = 1.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def fire_due(self) -> int:
        """Claim and fire one batch of due deadlines in one transaction; returns how many were claimed.

        The batch commits after `batch_size` deadlines or `max_batch_s` seconds, whichever comes first: effects
        appear only when their transaction commits, so a long batch would hold all of them back until its end (200
        escalations at 10 ms each are two seconds). Claimed rows not reached by then are released by the commit
        and claimed again at once.
        """
        t = self.table
        fired: list[tuple[str, float]] = []
        started = time.monotonic()
        async with unit_of_work(self.factory, system_settings()) as session:
            conn = await session.connection()
            rows = (
                await conn.execute(
                    sa.select(t.c.id, t.c.kind, t.c.ref, t.c.due_at, t.c.attempts)
                    .where(t.c.fired_at.is_(None), t.c.due_at <= sa.func.clock_timestamp(), *self._kind_filter())
                    .order_by(t.c.due_at)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                if time.monotonic() - started >= self.max_batch_s:
                    break
                due = Due(row.id, row.kind, row.ref, row.due_at, row.attempts)
                try:
                    async with session.begin_nested():
                        await self.handler(session, due)
                except Exception as exc:
                    await self._failed(session, due, exc)
                    continue
                mark = sa.update(t).where(t.c.id == due.id).values(fired_at=sa.func.clock_timestamp())
                fired_at = (await conn.execute(mark.returning(t.c.fired_at))).scalar_one()
                fired.append((due.kind, max((fired_at - due.due_at).total_seconds(), 0.0)))
        # observed once committed: a batch that fails to commit has fired nothing
        for kind, lateness in fired:
            LATENESS.labels(kind).observe(lateness)
            FIRED.labels(kind, "fired").inc()
        return len(rows)

    def _kind_filter(self) -> list[sa.ColumnElement[bool]]:
        t = self.table
        filters: list[sa.ColumnElement[bool]] = []
        if self.exclude_kinds:
            filters.append(t.c.kind.not_in(self.exclude_kinds))
        if self.kinds is not None:
            filters.append(t.c.kind.in_(self.kinds))
        return filters

    async def _failed(self, session: AsyncSession, due: Due, exc: Exception) -> None:
        t = self.table
        conn = await session.connection()
        if is_database_unavailable(exc):
            # A deadlock with another transaction (or the database going away) is not the deadline's fault: it
            # must not use up an attempt, or contention alone could make an escalation be given up. Still due, it
            # is claimed again on the next round.
            log.warning("deadline %s (%s) will be fired again: %s", due.id, due.kind, type(exc).__name__)
            await conn.execute(sa.update(t).where(t.c.id == due.id).values(last_error=str(exc)[:500]))
            return
        attempts = due.attempts + 1
        if attempts >= self.max_attempts:
            log.error("deadline %s (%s) failed %d times, giving up: %s", due.id, due.kind, attempts, exc)
            # clock_timestamp(), not now(): now() is when the transaction began, maybe a long handler ago
            values: dict[str, object] = {
                "fired_at": sa.func.clock_timestamp(),
                "attempts": attempts,
                "last_error": str(exc)[:500],
            }
            FIRED.labels(due.kind, "failed").inc()
        else:
            log.warning("deadline %s (%s) failed (%s); retrying", due.id, due.kind, exc)
            retry_at = sa.func.clock_timestamp() + timedelta(seconds=2**attempts)
            values = {"due_at": retry_at, "attempts": attempts, "last_error": str(exc)[:500]}
        await conn.execute(sa.update(t).where(t.c.id == due.id).values(**values))

    async def _seconds_to_next(self) -> float:
        t = self.table
        async with unit_of_work(self.factory, system_settings()) as session:
            conn = await session.connection()
            wait = (
                await conn.execute(
                    sa.select(sa.func.extract("epoch", sa.func.min(t.c.due_at) - sa.func.clock_timestamp())).where(
                        t.c.fired_at.is_(None), *self._kind_filter()
                    )
                )
            ).scalar()
        if wait is None:
            return self.max_sleep_s
        return min(max(float(wait), 0.0), self.max_sleep_s)
