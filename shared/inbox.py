"""Idempotent consumption: each handled event id is recorded in the same transaction as its effects."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import SessionFactory, unit_of_work, write_behind
from shared.events import Envelope
from shared.kafka import BatchHandler, Handler
from shared.scope import system_settings


def inbox_table(metadata: sa.MetaData, schema: str) -> sa.Table:
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )


async def claim(
    session: AsyncSession, table: sa.Table, consumer: str, event_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Of `event_ids`, those `consumer` sees for the first time (the others are redeliveries), in one statement."""
    if not event_ids:
        return set()
    rows = [{"consumer": consumer, "event_id": event_id} for event_id in dict.fromkeys(event_ids)]
    stmt = insert(table).on_conflict_do_nothing().returning(table.c.event_id)
    conn = await session.connection()
    return set((await conn.execute(stmt, rows)).scalars().all())


SessionHandler = Callable[[AsyncSession, Envelope], Awaitable[None]]
# The new events of a batch, in order, at once: with the effect of handling each in turn on its own, each seeing what
# the ones before it did. A handler that can read or write for the whole batch at once takes this form.
SessionBatchHandler = Callable[[AsyncSession, Sequence[Envelope]], Awaitable[None]]


def each(handler: SessionHandler) -> SessionBatchHandler:
    """A per-event handler in batch form: the events one after the other."""

    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            await handler(session, envelope)

    return handle


def transactional(factory: SessionFactory, table: sa.Table, consumer: str, handler: SessionBatchHandler) -> Handler:
    """Wrap a handler so it runs once per event id, in one transaction with the inbox record; its plain inserts
    (`shared.db.insert_rows`) are written when it returns, one statement per table."""
    together = transactional_batch(factory, table, consumer, handler)

    async def handle(envelope: Envelope) -> None:
        await together([envelope])

    return handle


def transactional_batch(
    factory: SessionFactory, table: sa.Table, consumer: str, handler: SessionBatchHandler
) -> BatchHandler:
    """`transactional` for a partition's polled events at once: one transaction, one inbox statement, the handler
    on the new events (the same event twice in one poll once), and their plain inserts written together at the
    end."""

    async def handle(envelopes: Sequence[Envelope]) -> None:
        async with unit_of_work(factory, system_settings()) as session, write_behind(session):
            fresh = await claim(session, table, consumer, [e.id for e in envelopes])
            new = []
            for envelope in envelopes:
                if envelope.id in fresh:
                    fresh.discard(envelope.id)  # the same event twice in one poll is handled once
                    new.append(envelope)
            if new:
                await handler(session, new)

    return handle
