"""The transactional outbox: events commit with the state that caused them, then a relay publishes them.

A row is marked published only after the broker acknowledged it (acks=all), so a crash anywhere between
commit and acknowledgement republishes rather than loses; consumers are idempotent by event id.
Published rows are kept for `retention` so that `quanzu outbox replay --since` can republish after a
broker lost its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import Row, insert_rows, listen
from shared.events import Envelope
from shared.metrics import OUTBOX_PENDING, OUTBOX_PUBLISH_SECONDS, OUTBOX_PUBLISHED

log = logging.getLogger(__name__)


def outbox_table(metadata: sa.MetaData, schema: str) -> sa.Table:
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Index(f"ix_{schema}_outbox_pending", "id", postgresql_where=sa.text("published_at IS NULL")),
        sa.Index(f"ix_{schema}_outbox_created_at", "created_at"),
        schema=schema,
    )


def notify_channel(schema: str) -> str:
    return f"quanzu_outbox_{schema}"


def create_notify_trigger_sql(schema: str) -> list[str]:
    """DDL for migrations: wake the relay when a transaction that wrote outbox rows commits."""
    channel = notify_channel(schema)
    return [
        f"""CREATE OR REPLACE FUNCTION {schema}.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$""",
        f"""CREATE TRIGGER outbox_notify AFTER INSERT ON {schema}.outbox
            FOR EACH STATEMENT EXECUTE FUNCTION {schema}.outbox_notify()""",
    ]


async def enqueue(session: AsyncSession, table: sa.Table, topic: str, key: str | None, envelope: Envelope) -> None:
    await enqueue_many(session, table, [(topic, key, envelope)])


async def enqueue_many(
    session: AsyncSession, table: sa.Table, events: Sequence[tuple[str, str | None, Envelope]]
) -> None:
    rows: list[Row] = [
        {
            "event_id": envelope.id,
            "event_type": envelope.type,
            "topic": topic,
            "key": key.encode() if key is not None else None,
            "value": envelope.to_bytes(),
        }
        for topic, key, envelope in events
    ]
    await insert_rows(session, table, rows)


class OutboxRelay:
    """Publishes a service's outbox in commit order. One relay publishes at a time per service (an
    advisory lock), so per-key order on the topic is the order of the outbox, even with replicas.

    Every replica's relay is woken by every commit's NOTIFY. One that finds another holding the turn waits
    `idle_poll_s` before it tries again instead of answering each NOTIFY: the holder is publishing those rows (it
    had the NOTIFY too), and answering them cost an idle intake replica a third of a core at 900 posts/s. If the
    holder dies, another relay takes over within `idle_poll_s`."""

    def __init__(
        self,
        *,
        service: str,
        engine: AsyncEngine,
        database_url: str,
        table: sa.Table,
        producer: AIOKafkaProducer,
        batch_size: int = 500,
        idle_poll_s: float = 1.0,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.service = service
        self.engine = engine
        self.database_url = database_url
        self.table = table
        self.producer = producer
        self.batch_size = batch_size
        self.idle_poll_s = idle_poll_s
        self.retention = retention
        self._wake = asyncio.Event()
        self._lock_key = zlib.crc32(f"quanzu-outbox-{table.schema}".encode())
        # The turn (the advisory lock) and the batch in one round trip, built once: a single row with `got` and no
        # event when the turn is another relay's or nothing is pending. The lock is taken once, in a materialised
        # CTE, and now() is the transaction's start, the same for every row.
        self._turn_and_batch = sa.text(f"""
            WITH turn AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(:key) AS got)
            SELECT turn.got, o.id, o.topic, o.key, o.value, o.created_at, now() AS now
              FROM turn LEFT JOIN LATERAL (
                   SELECT id, topic, key, value, created_at FROM {table.fullname}
                    WHERE turn.got AND published_at IS NULL ORDER BY id LIMIT :limit
              ) o ON true
        """)
        self._last_purge = datetime.min
        self._pending_counted_at = -math.inf

    async def run(self) -> None:
        listener = asyncio.create_task(listen(self.database_url, notify_channel(str(self.table.schema)), self.wake))
        backoff = 0.25
        try:
            while True:
                try:
                    published = await self.publish_batch()
                    backoff = 0.25
                except Exception as exc:
                    log.warning("outbox %s: publishing failed (%s); retrying in %.1fs", self.service, exc, backoff)
                    await self._update_pending()  # the backlog alert must see it grow while the broker is away
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if published is None:  # another relay has the turn
                    await asyncio.sleep(self.idle_poll_s)
                    self._wake.clear()
                    continue
                if published >= self.batch_size:
                    continue  # a backlog: straight on with the next batch
                await self._update_pending()
                if not published:
                    await self._purge_if_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll_s)
                self._wake.clear()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def wake(self, _payload: str = "") -> None:
        self._wake.set()

    async def publish_batch(self) -> int | None:
        """Publish up to one batch; returns how many rows were published (0: none pending), None if another relay
        has the turn."""
        t = self.table
        async with self.engine.begin() as conn:
            params = {"key": self._lock_key, "limit": self.batch_size}
            found = (await conn.execute(self._turn_and_batch, params)).all()
            if not found[0].got:
                return None
            rows = [r for r in found if r.id is not None]
            if not rows:
                return 0
            async with asyncio.timeout(30):
                futures = [await self.producer.send(r.topic, value=r.value, key=r.key) for r in rows]
                await asyncio.gather(*futures)
            now = rows[0].now
            await conn.execute(sa.update(t).where(t.c.id.in_([r.id for r in rows])).values(published_at=now))
        histogram = OUTBOX_PUBLISH_SECONDS.labels(self.service)
        for r in rows:
            histogram.observe(max((now - r.created_at).total_seconds(), 0.0))
        OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def _update_pending(self) -> None:
        # At most once a second: a relay woken by every single-record commit would otherwise count its backlog
        # after each of them, a statement per warning for a gauge that is scraped every few seconds.
        if time.monotonic() - self._pending_counted_at < 1.0:
            return
        self._pending_counted_at = time.monotonic()
        t = self.table
        with contextlib.suppress(Exception):
            async with self.engine.connect() as conn:
                pending = (
                    await conn.execute(sa.select(sa.func.count()).where(t.c.published_at.is_(None)))
                ).scalar_one()
            OUTBOX_PENDING.labels(self.service).set(pending)

    async def _purge_if_due(self) -> None:
        now = datetime.now()
        if now - self._last_purge < timedelta(minutes=10):
            return
        self._last_purge = now
        t = self.table
        with contextlib.suppress(Exception):
            async with self.engine.begin() as conn:
                await conn.execute(
                    sa.delete(t).where(t.c.published_at.is_not(None), t.c.published_at < sa.func.now() - self.retention)
                )


async def replay_since(engine: AsyncEngine, table: sa.Table, since: datetime) -> int:
    """Mark every row created since `since` unpublished again, so the relay republishes it."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.update(table).where(table.c.created_at >= since).values(published_at=None))
        await conn.execute(sa.select(sa.func.pg_notify(notify_channel(str(table.schema)), "")))
    return int(result.rowcount or 0)
