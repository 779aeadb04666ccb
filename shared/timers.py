"""Durable deadlines: rows in PostgreSQL, fired exactly once by whichever replica claims them first.

- Claimed with `FOR UPDATE SKIP LOCKED` in the transaction that runs the handler and marks them fired,
  so any number of replicas can run, each deadline's effect commits once, and a crash before the commit
  leaves it to be fired again (by this replica after a restart, or by another at once).
- The engine sleeps until the next due time, and is woken early when a nearer deadline is written
  (a statement trigger NOTIFYs on insert, naming the kinds, how many and how soon): no polling interval to be late
  by. One listener per process (`Waker`) wakes only the engines a notification concerns, only as many as it has
  deadlines for, and only if they are due before the engine meant to wake anyway: every case a warning opens
  writes deadlines, and waking every engine for each of them was a fifth of dispatch's work. New work is acted on
  when its event arrives; timers are only for what must happen later.
- A handler's plain inserts (`shared.db.insert_rows`: events, deadlines) are held and written when it returns, one
  statement per table.
- A handler that raises is retried with backoff in its own savepoint, without holding up the others;
  after `max_attempts` the deadline is marked fired with its error, and logged, so it cannot loop forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import (
    SessionFactory,
    hold_update,
    insert_rows,
    is_database_unavailable,
    listen,
    unit_of_work,
    write_behind,
    write_held,
)
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


def wake_trigger_sql(schema: str) -> list[str]:
    """DDL for migrations: when a transaction that wrote deadlines commits, one notification per kind written,
    "<kind> <earliest due_at, epoch seconds> <how many>" (`Notified.parse`). Replaces `notify_trigger_sql`'s
    trigger, whose empty notification woke every engine."""
    return [
        f"""CREATE OR REPLACE FUNCTION {schema}.deadlines_wake() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE r record;
            BEGIN
              FOR r IN SELECT kind, min(due_at) AS due, count(*) AS n FROM inserted GROUP BY kind LOOP
                PERFORM pg_notify('{channel(schema)}', r.kind || ' ' || extract(epoch FROM r.due) || ' ' || r.n);
              END LOOP;
              RETURN NULL;
            END $$""",
        f"""CREATE TRIGGER deadlines_wake AFTER INSERT ON {schema}.deadlines REFERENCING NEW TABLE AS inserted
            FOR EACH STATEMENT EXECUTE FUNCTION {schema}.deadlines_wake()""",
    ]


@dataclass(frozen=True)
class Notified:
    kind: str | None  # None: a notification without details (the old trigger's), for every engine at once
    due: float  # when the earliest of them is due, on this process's time.monotonic() clock
    count: int

    @classmethod
    def parse(cls, payload: str, *, wall: float, monotonic: float) -> Notified:
        """`wall` and `monotonic`: now on both clocks, to move the database's epoch onto the monotonic one (a clock
        apart from the database's wakes an engine early or late by as much; it then asks the database itself)."""
        parts = payload.rsplit(" ", 2)
        try:
            kind, due, count = parts[0], float(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            return cls(None, monotonic, 1)
        return cls(kind, monotonic + (due - wall), count)


@dataclass(frozen=True)
class Due:
    id: int
    kind: str
    ref: uuid.UUID
    due_at: datetime
    attempts: int


async def schedule(session: AsyncSession, table: sa.Table, kind: str, ref: uuid.UUID, due_at: datetime) -> None:
    await schedule_many(session, table, [(kind, ref, due_at)])


async def schedule_many(
    session: AsyncSession, table: sa.Table, deadlines: list[tuple[str, uuid.UUID, datetime]]
) -> None:
    """Several deadlines in one statement (a task's due and acknowledgement deadlines: one round trip, not two)."""
    await insert_rows(session, table, [{"kind": k, "ref": r, "due_at": d} for k, r, d in deadlines])


async def cancel(session: AsyncSession, table: sa.Table, ref: uuid.UUID, kinds: tuple[str, ...] | None = None) -> None:
    """Retire the pending deadlines of `ref` (a task done in time needs no timer); of those `kinds` only, if given.
    Inside a `write_behind` block, at its end, in one statement with the block's other cancellations
    (`shared.db.hold_update`).

    A deadline an engine is firing right now (its row locked) is left to the engine: waiting for it would deadlock,
    since the engine's handler waits for the task or case this caller has locked. It came due before this change
    committed, and its handler, which locks the task and case after this transaction, sees the state as it now is.
    """
    # the ref's deadlines scheduled earlier in a `write_behind` block are cancelled too
    await write_held(session, table, matching=lambda row: row["ref"] == ref)
    statement = _cancel_statement(table, kinds)
    if not hold_update(session, table, statement, ref):
        await (await session.connection()).execute(statement, {"values": [ref]})


@functools.cache
def _cancel_statement(table: sa.Table, kinds: tuple[str, ...] | None) -> sa.TextClause:
    """The cancellation of the deadlines of the refs in `:values`, built once per table and kinds."""
    of_kinds = "" if kinds is None else " AND kind = ANY(CAST(:kinds AS text[]))"
    statement = sa.text(
        f"UPDATE {table.fullname} SET fired_at = now(), last_error = 'cancelled' WHERE id IN ("
        f" SELECT id FROM {table.fullname} WHERE ref = ANY(CAST(:values AS uuid[])) AND fired_at IS NULL{of_kinds}"
        " FOR UPDATE SKIP LOCKED)"
    )
    return statement if kinds is None else statement.bindparams(kinds=list(kinds))


Handler = Callable[[AsyncSession, Due], Awaitable[None]]
# The same work for a round's deadlines at once (`TimerEngine`'s `batch_handler`): the effect must be that of
# `Handler` on each of them in turn, so that a batch that fails can be fired again one by one. It returns the
# deadlines it could not fire (by id, with the error), having changed nothing for them: they are retried alone.
BatchHandler = Callable[[AsyncSession, Sequence[Due]], Awaitable[Mapping[int, Exception]]]
LOCKED_RETRY_S = 0.25  # due deadlines that other engines hold: look again this much later, not at once


@dataclass(frozen=True)
class Fired:
    claimed: int
    next_in_s: float | None  # until the next pending deadline is due (<= 0: due now), None: none pending
    full: bool  # the round stopped at its batch size or time: more may be due at once


class Waker:
    """The deadlines table's notifications, heard once per process and handed to the engines they concern."""

    def __init__(self, database_url: str, table: sa.Table) -> None:
        self.database_url = database_url
        self.table = table
        self.engines: list[TimerEngine] = []

    async def run(self) -> None:
        await listen(self.database_url, channel(str(self.table.schema)), self.notify)

    def notify(self, payload: str) -> None:
        notified = Notified.parse(payload, wall=time.time(), monotonic=time.monotonic())
        left = notified.count if notified.kind is not None else len(self.engines)
        for engine in self.engines:
            if left > 0 and engine.wants(notified.kind) and engine.offer(notified.due):
                left -= 1


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
        waker: Waker | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self.factory = factory
        self.database_url = database_url
        self.table = table
        self.handler = handler
        self.batch_handler = batch_handler
        self.batch_size = batch_size
        self.max_batch_s = max_batch_s
        self.max_sleep_s = max_sleep_s
        self.max_attempts = max_attempts
        # Separate engines for separate kinds: a slow SMS provider must not hold up escalations.
        self.kinds = kinds
        self.exclude_kinds = exclude_kinds
        # None: the engine listens for itself (a process with one engine on the table)
        self.waker = waker
        if waker is not None:
            waker.engines.append(self)
        self._wake = asyncio.Event()
        self._busy = True
        self._wake_at = math.inf  # when it means to wake (time.monotonic()), while idle
        self._notified = math.inf  # the earliest deadline notified while it was busy

    def wants(self, kind: str | None) -> bool:
        if kind is None:
            return True
        return kind not in self.exclude_kinds and (self.kinds is None or kind in self.kinds)

    def offer(self, due: float) -> bool:
        """A deadline of this engine's kinds, due at `due`, was written; True if that woke the engine."""
        if self._busy:
            self._notified = min(self._notified, due)  # it looks at the table again when this round ends
            return False
        if due >= self._wake_at:
            return False  # it wakes in time anyway
        self._wake_at = due
        self._wake.set()
        return True

    async def run(self) -> None:
        own = None
        if self.waker is None:
            waker = Waker(self.database_url, self.table)
            waker.engines.append(self)
            own = asyncio.create_task(waker.run())
        try:
            while True:
                self._busy, self._notified = True, math.inf
                try:
                    delay = self._delay(await self.fire_due())
                except Exception as exc:
                    log.warning("deadlines: %s; retrying", exc)
                    delay = 1.0
                delay = min(delay, max(self._notified - time.monotonic(), 0.0))
                if delay <= 0:
                    continue
                self._wake.clear()
                self._wake_at = time.monotonic() + delay
                self._busy = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            if own is not None:
                own.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await own

    def _delay(self, fired: Fired) -> float:
        if fired.full:
            return 0.0
        if fired.next_in_s is None:
            return self.max_sleep_s
        if fired.next_in_s <= 0:
            # Due, but not claimed by this round: held by another engine (or come due since it looked). Spinning
            # on them until that engine commits was most of what idle SMS senders did.
            return 0.0 if fired.claimed else LOCKED_RETRY_S
        return min(fired.next_in_s, self.max_sleep_s)

    async def fire_due(self) -> Fired:
        """Claim and fire one batch of due deadlines in one transaction, and find when the next is due.

        The batch commits after `batch_size` deadlines or `max_batch_s` seconds, whichever comes first: effects
        appear only when their transaction commits, so a long batch would hold all of them back until its end (200
        escalations at 10 ms each are two seconds). Claimed rows not reached by then are released by the commit
        and claimed again at once. With a `batch_handler`, a round of more than one deadline is fired by it at once
        (`_fire_together`), and `max_batch_s` does not apply: `batch_size` bounds the round.
        """
        t = self.table
        fired: list[tuple[str, float]] = []
        started = time.monotonic()
        full = False
        next_in_s: float | None = 0.0
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
            dues = [Due(row.id, row.kind, row.ref, row.due_at, row.attempts) for row in rows]
            if len(dues) > 1 and await self._fire_together(session, dues, fired):
                dues = []
            for due in dues:
                if time.monotonic() - started >= self.max_batch_s:
                    full = True
                    break
                try:
                    async with session.begin_nested(), write_behind(session):
                        await self.handler(session, due)
                except Exception as exc:
                    await self._failed(session, due, exc)
                    continue
                fired.extend(await self._mark_fired(session, [due]))
            full = full or len(rows) >= self.batch_size
            if not full:  # in the same transaction: one round trip, not another transaction
                next_in_s = await self._seconds_to_next(conn)
        # observed once committed: a batch that fails to commit has fired nothing
        for kind, lateness in fired:
            LATENESS.labels(kind).observe(lateness)
            FIRED.labels(kind, "fired").inc()
        return Fired(len(rows), next_in_s, full)

    async def _fire_together(self, session: AsyncSession, dues: list[Due], fired: list[tuple[str, float]]) -> bool:
        """Fire the round's deadlines with the batch handler, in one savepoint, and mark them fired in one statement
        (those it could not fire are retried alone). False if there is no batch handler, or if the batch failed: its
        savepoint is rolled back, and the deadlines are fired one by one, each failure on its own."""
        if self.batch_handler is None:
            return False
        try:
            async with session.begin_nested(), write_behind(session):
                failed = await self.batch_handler(session, dues)
        except Exception as exc:
            log.info(
                "deadlines: a batch of %d failed (%s: %s); firing them one by one", len(dues), type(exc).__name__, exc
            )
            return False
        fired.extend(await self._mark_fired(session, [d for d in dues if d.id not in failed]))
        for due in dues:
            if due.id in failed:
                await self._failed(session, due, failed[due.id])
        return True

    async def _mark_fired(self, session: AsyncSession, dues: list[Due]) -> list[tuple[str, float]]:
        """Mark the deadlines fired, in one statement; each one's kind and lateness, to observe once committed."""
        if not dues:
            return []
        t = self.table
        # clock_timestamp(), not now(): now() is when the transaction began, maybe a long handler ago
        mark = sa.update(t).where(t.c.id.in_([d.id for d in dues])).values(fired_at=sa.func.clock_timestamp())
        conn = await session.connection()
        rows = (await conn.execute(mark.returning(t.c.id, t.c.fired_at))).all()
        fired_at: dict[int, datetime] = {row.id: row.fired_at for row in rows}
        return [(d.kind, max((fired_at[d.id] - d.due_at).total_seconds(), 0.0)) for d in dues]

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

    async def _seconds_to_next(self, conn: AsyncConnection) -> float | None:
        t = self.table
        wait = (
            await conn.execute(
                sa.select(sa.func.extract("epoch", sa.func.min(t.c.due_at) - sa.func.clock_timestamp())).where(
                    t.c.fired_at.is_(None), *self._kind_filter()
                )
            )
        ).scalar()
        return None if wait is None else float(wait)
