"""The Kafka plumbing against the real broker and PostgreSQL: the consumer loop, dead letters, the inbox,
the outbox relay (also across a broker outage) and the outbox replay.

Every test uses its own topics and consumer groups. The outbox tests use feedback's outbox, which no other
test reads; one relay runs on it at a time (the relay takes an advisory lock per schema).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.db import INBOX
from shared.db import SessionFactory, make_session_factory, unit_of_work
from shared.devinfra import Broker, wait_for
from shared.events import Envelope, dead_letter_topic
from shared.inbox import each, transactional, transactional_batch
from shared.kafka import ConsumerLoop, Handler, PoisonMessage, ensure_topics, make_producer, read_to_end
from shared.outbox import OutboxRelay, create_notify_trigger_sql, enqueue_many, outbox_table, replay_since
from tests.conftest import scratch_schema

EFFECTS_SCHEMA = "plumbing_test"

# ---------------------------------------------------------------------------------------------- helpers


def new_envelope(n: int = 0, **data: Any) -> Envelope:
    return Envelope(
        id=uuid.uuid4(),
        type="plumbing.tested",
        source="test_kafka_plumbing",
        time=datetime.now(UTC),
        data={"n": n, **data},
    )


def new_group() -> str:
    return f"test-plumbing-{uuid.uuid4().hex}"


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, n, 1) for name, n in partitions.items()])
    finally:
        await admin.close()


async def new_topic(bootstrap: str, partitions: int = 1, *, with_dlq: bool = False) -> str:
    """A fresh topic (and its dead-letter topic, with one partition) created on the broker."""
    topic = f"test.{uuid.uuid4().hex}"
    await create_topics(bootstrap, {topic: partitions, **({dead_letter_topic(topic): 1} if with_dlq else {})})
    return topic


@contextlib.asynccontextmanager
async def started_producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(bootstrap, client_id=f"test-plumbing-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run `coro` as a task for the block; cancel it afterwards (and surface it if it crashed)."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def consumer_loop(
    broker: Broker, producer: AIOKafkaProducer, topic: str, handler: Handler, *, group: str, max_attempts: int = 3
) -> ConsumerLoop:
    return ConsumerLoop(
        bootstrap_servers=broker.bootstrap,
        group=group,
        topics=[topic],
        handler=handler,
        producer=producer,
        max_attempts=max_attempts,
    )


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    values: Sequence[bytes],
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    for value in values:
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    partitions: set[int] = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        await consumer._client.force_metadata_update()
    return partitions


async def read_topic(bootstrap: str, topic: str, *, timeout: float = 15.0) -> list[Any]:
    """Every record of `topic` up to its end offsets as of now, by partition then offset (no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions: set[int] = await wait_for(
            lambda: _partitions(consumer, topic), timeout=timeout, message=f"the partitions of {topic}"
        )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: dict[Any, list[Any]] = {tp: [] for tp in tps}

        async def read() -> None:
            async for tp, batch in read_to_end(consumer, tps, timeout_ms=100):
                records[tp].extend(batch)

        try:
            await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout}s reading {topic} to its end") from None
        return [r for tp in tps for r in records[tp]]
    finally:
        await consumer.stop()


def envelope_ids(records: list[Any]) -> list[uuid.UUID]:
    return [Envelope.model_validate_json(r.value).id for r in records]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def enqueue(factory: SessionFactory, topic: str, envelopes: Sequence[Envelope], key: str | None = "k") -> None:
    async with unit_of_work(factory) as session:
        await enqueue_many(session, OUTBOX, [(topic, key, e) for e in envelopes])


async def published_at(engine: AsyncEngine, envelopes: Sequence[Envelope]) -> dict[uuid.UUID, datetime | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(OUTBOX.c.event_id, OUTBOX.c.published_at).where(OUTBOX.c.event_id.in_([e.id for e in envelopes]))
        )
        return {r.event_id: r.published_at for r in rows}


async def all_published(engine: AsyncEngine, envelopes: Sequence[Envelope]) -> bool:
    marks = await published_at(engine, envelopes)
    return len(marks) == len(envelopes) and all(m is not None for m in marks.values())


async def db_now(engine: AsyncEngine) -> datetime:
    async with engine.connect() as conn:
        now: datetime = (await conn.execute(sa.select(sa.func.now()))).scalar_one()
        return now


def with_application_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("application_name", name)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def relay_for(engine: AsyncEngine, database_url: str, producer: AIOKafkaProducer, **options: Any) -> OutboxRelay:
    return OutboxRelay(
        service="feedback",
        engine=engine,
        database_url=database_url,
        table=OUTBOX,
        producer=producer,
        **options,
    )


# The relays here publish an outbox of their own: on feedback's, the running feedback service's relay (another
# test's app) took turns publishing the same rows, and after a broker restart sent them before their topic existed.
OUTBOX_SCHEMA = "relay_test"
OUTBOX = outbox_table(sa.MetaData(), OUTBOX_SCHEMA)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    ddl = create_notify_trigger_sql(OUTBOX_SCHEMA)
    async with scratch_schema(database_url, OUTBOX_SCHEMA, OUTBOX.metadata, ddl=ddl, pool_size=4) as engine:
        yield engine


# ---------------------------------------------------------------------------------------- consumer loop


async def test_consumer_loop_hands_every_envelope_to_the_handler_and_commits_after_handling(broker: Broker) -> None:
    topic = await new_topic(broker.bootstrap, partitions=3)
    group = new_group()
    envelopes = [new_envelope(i) for i in range(30)]
    last = envelopes[-1]
    seen: list[uuid.UUID] = []
    last_entered, release = asyncio.Event(), asyncio.Event()

    async def record(envelope: Envelope) -> None:
        if envelope.id == last.id:
            last_entered.set()
            await release.wait()
        seen.append(envelope.id)

    tps = [TopicPartition(topic, p) for p in range(3)]
    checker = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    await checker.start()
    try:

        async def committed() -> int:
            return sum([await checker.committed(tp) or 0 for tp in tps])

        def committed_up_to(n: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return await committed() == n

            return check

        async with started_producer(broker.bootstrap) as producer:
            for i, e in enumerate(envelopes[:-1]):
                await producer.send_and_wait(topic, value=e.to_bytes(), key=f"key-{i}".encode())
            loop = consumer_loop(broker, producer, topic, record, group=group)
            async with running(loop.run()):
                await wait_for(lambda: len(seen) == len(envelopes) - 1, timeout=30, message="envelopes handled")
                await wait_for(committed_up_to(len(envelopes) - 1), timeout=10, message="offsets committed")

                await producer.send_and_wait(topic, value=last.to_bytes(), key=b"last")
                await asyncio.wait_for(last_entered.wait(), timeout=10)
                assert await committed() == len(envelopes) - 1  # not committed while its handler runs
                release.set()
                await wait_for(committed_up_to(len(envelopes)), timeout=10, message="the last committed")

        ends: dict[Any, int] = await checker.end_offsets(tps)
        assert sum(ends.values()) == len(envelopes)
        assert {tp: await checker.committed(tp) or 0 for tp in tps} == ends
    finally:
        await checker.stop()
    assert sorted(seen) == sorted(e.id for e in envelopes)
    assert len(seen) == len(envelopes)


async def test_read_to_end_reads_the_last_batch_whole(broker: Broker) -> None:
    """Records produced together travel as one batch; the development broker's ListOffsets counts only the first
    of the last batch, and a read bounded by it stopped short of the rest."""
    topic = await new_topic(broker.bootstrap, partitions=2)
    async with started_producer(broker.bootstrap) as producer:
        await producer.send_and_wait(topic, value=b"first", partition=1)
        await asyncio.gather(*(producer.send_and_wait(topic, value=b"%d" % n, partition=0) for n in range(7)))
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        everything = [(r.partition, r.value) async for r in _values(consumer, tps)]
    finally:
        await consumer.stop()
    assert sorted(everything) == sorted([(1, b"first"), *((0, b"%d" % n) for n in range(7))]), f"ListOffsets: {ends}"


async def _values(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> AsyncIterator[Any]:
    async for _, records in read_to_end(consumer, tps):
        for record in records:
            yield record


async def test_partitions_are_handled_side_by_side_and_each_in_its_order(broker: Broker) -> None:
    """Each partition's first record waits until the other's has started: one partition at a time, neither would."""
    topic = await new_topic(broker.bootstrap, partitions=2)
    seen: dict[int, list[int]] = {0: [], 1: []}
    both_started = asyncio.Barrier(2)
    waited_alone = 0

    async def record(envelope: Envelope) -> None:
        nonlocal waited_alone
        partition, n = int(envelope.data["partition"]), int(envelope.data["n"])
        if n == 0:
            try:
                await asyncio.wait_for(both_started.wait(), timeout=10)
            except TimeoutError:
                waited_alone += 1
        seen[partition].append(n)

    async with started_producer(broker.bootstrap) as producer:
        for p in (0, 1):
            for i in range(20):
                await producer.send_and_wait(topic, value=new_envelope(i, partition=p).to_bytes(), partition=p)
        loop = consumer_loop(broker, producer, topic, record, group=new_group())
        async with running(loop.run()):
            await wait_for(lambda: len(seen[0]) + len(seen[1]) == 40, timeout=60, message="every record handled")
    assert waited_alone == 0
    assert seen == {0: list(range(20)), 1: list(range(20))}


async def test_poison_messages_are_dead_lettered_and_the_partition_moves_on(broker: Broker) -> None:
    topic = await new_topic(broker.bootstrap, partitions=1, with_dlq=True)
    group = new_group()
    first, poison, after = new_envelope(1), new_envelope(2), new_envelope(3)
    handled: list[uuid.UUID] = []
    dead_lettered_before = sample("quanzu_dlq_messages_total", topic=topic)

    async def handler(envelope: Envelope) -> None:
        if envelope.id == poison.id:
            raise PoisonMessage("unknown area 999999-999")
        handled.append(envelope.id)

    async with started_producer(broker.bootstrap) as producer:
        await produce(producer, topic, [first.to_bytes(), b"\x00this is not JSON {"], key=b"k")
        await produce(producer, topic, [poison.to_bytes()], key=b"k", headers=[("trace", b"t-1")])
        await produce(producer, topic, [after.to_bytes()], key=b"k")
        loop = consumer_loop(broker, producer, topic, handler, group=group)
        async with running(loop.run()):
            await wait_for(lambda: after.id in handled, timeout=30, message="the message after the poison")

    assert handled == [first.id, after.id]
    dead = await read_topic(broker.bootstrap, dead_letter_topic(topic))
    assert [r.value for r in dead] == [b"\x00this is not JSON {", poison.to_bytes()]
    assert [r.key for r in dead] == [b"k", b"k"]
    undecodable, refused = (dict(r.headers) for r in dead)
    assert undecodable["dlq.error"].decode().startswith("undecodable envelope")
    assert refused["dlq.error"] == b"PoisonMessage: unknown area 999999-999"
    assert refused["trace"] == b"t-1"  # the original headers travel along
    for headers, offset in ((undecodable, b"1"), (refused, b"2")):
        assert headers["dlq.topic"] == topic.encode()
        assert headers["dlq.partition"] == b"0"
        assert headers["dlq.offset"] == offset
        assert headers["dlq.group"] == group.encode()
    assert sample("quanzu_dlq_messages_total", topic=topic) == dead_lettered_before + 2
    assert sample("quanzu_events_handled_total", topic=topic, group=group, result="handled") == 2
    assert sample("quanzu_events_handled_total", topic=topic, group=group, result="dead_lettered") == 2


async def test_failing_handlers_are_retried_then_dead_lettered_and_a_transient_failure_is_handled_once(
    broker: Broker,
) -> None:
    topic = await new_topic(broker.bootstrap, partitions=1, with_dlq=True)
    group = new_group()
    broken, flaky, after = new_envelope(1), new_envelope(2), new_envelope(3)
    calls: Counter[uuid.UUID] = Counter()
    handled: list[uuid.UUID] = []

    async def handler(envelope: Envelope) -> None:
        calls[envelope.id] += 1
        if envelope.id == broken.id:
            raise RuntimeError("always broken")
        if envelope.id == flaky.id and calls[envelope.id] == 1:
            raise RuntimeError("transient")
        handled.append(envelope.id)

    async with started_producer(broker.bootstrap) as producer:
        await produce(producer, topic, [e.to_bytes() for e in (broken, flaky, after)], key=b"k")
        loop = consumer_loop(broker, producer, topic, handler, group=group, max_attempts=3)
        async with running(loop.run()):
            await wait_for(lambda: after.id in handled, timeout=30, message="the last message handled")

    assert calls == {broken.id: 3, flaky.id: 2, after.id: 1}
    assert handled == [flaky.id, after.id]
    [dead] = await read_topic(broker.bootstrap, dead_letter_topic(topic))
    assert dead.value == broken.to_bytes()
    assert dict(dead.headers)["dlq.error"] == b"RuntimeError: always broken"
    assert dict(dead.headers)["dlq.offset"] == b"0"
    assert sample("quanzu_dlq_messages_total", topic=topic) == 1


async def test_a_handler_failing_with_an_os_error_unrelated_to_the_database_is_dead_lettered(
    broker: Broker,
) -> None:
    topic = await new_topic(broker.bootstrap, partitions=1, with_dlq=True)
    broken, after = new_envelope(1), new_envelope(2)
    calls: Counter[uuid.UUID] = Counter()
    handled: list[uuid.UUID] = []

    async def handler(envelope: Envelope) -> None:
        calls[envelope.id] += 1
        if envelope.id == broken.id:
            raise FileNotFoundError("templates/sms/zh.txt")
        handled.append(envelope.id)

    async with started_producer(broker.bootstrap) as producer:
        await produce(producer, topic, [broken.to_bytes(), after.to_bytes()], key=b"k")
        loop = consumer_loop(broker, producer, topic, handler, group=new_group(), max_attempts=3)
        async with running(loop.run()):
            await wait_for(
                lambda: after.id in handled or calls[broken.id] > 3,
                timeout=30,
                message="the next message handled, or more attempts than max_attempts",
            )

    assert calls[broken.id] == 3
    assert handled == [after.id]
    [dead] = await read_topic(broker.bootstrap, dead_letter_topic(topic))
    assert dict(dead.headers)["dlq.error"] == b"FileNotFoundError: templates/sms/zh.txt"


# ------------------------------------------------------------------------------------------------ inbox


@pytest.fixture
async def effects(engine: AsyncEngine) -> AsyncIterator[sa.Table]:
    """A table where test handlers record their effects, in a schema of its own, dropped afterwards."""
    table = sa.Table(
        f"effects_{uuid.uuid4().hex}",
        sa.MetaData(),
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        schema=EFFECTS_SCHEMA,
    )
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {EFFECTS_SCHEMA}"))
        await conn.run_sync(table.create)
    try:
        yield table
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {EFFECTS_SCHEMA} CASCADE"))


async def count_rows(engine: AsyncEngine, table: sa.Table, consumer: str, event_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        count: int = (
            await conn.execute(
                sa.select(sa.func.count()).where(table.c.consumer == consumer, table.c.event_id == event_id)
            )
        ).scalar_one()
        return count


async def test_inbox_runs_the_handler_once_per_event_id_when_delivered_twice(
    broker: Broker, engine: AsyncEngine, effects: sa.Table
) -> None:
    topic = await new_topic(broker.bootstrap, partitions=1, with_dlq=True)
    consumer = f"plumbing-{uuid.uuid4().hex}"
    twice, marker = new_envelope(1), new_envelope(2)
    deliveries: Counter[uuid.UUID] = Counter()
    effect_calls: Counter[uuid.UUID] = Counter()
    committed: Counter[uuid.UUID] = Counter()

    async def effect(session: AsyncSession, envelope: Envelope) -> None:
        effect_calls[envelope.id] += 1
        conn = await session.connection()
        await conn.execute(sa.insert(effects).values(consumer=consumer, event_id=envelope.id))

    once = transactional(make_session_factory(engine), INBOX, consumer, each(effect))

    async def deliver(envelope: Envelope) -> None:
        deliveries[envelope.id] += 1
        await once(envelope)
        committed[envelope.id] += 1

    async with started_producer(broker.bootstrap) as producer:
        await produce(producer, topic, [twice.to_bytes(), twice.to_bytes(), marker.to_bytes()], key=b"k")
        loop = consumer_loop(broker, producer, topic, deliver, group=new_group())
        async with running(loop.run()):
            # Waiting on the effect's call would stop the loop inside the marker's transaction, before its commit.
            await wait_for(lambda: committed[marker.id] == 1, timeout=30, message="the marker committed")

    assert deliveries[twice.id] == 2
    assert effect_calls[twice.id] == 1
    assert await count_rows(engine, effects, consumer, twice.id) == 1
    assert await count_rows(engine, INBOX, consumer, twice.id) == 1
    assert await count_rows(engine, INBOX, consumer, marker.id) == 1
    assert sample("quanzu_dlq_messages_total", topic=topic) == 0


async def test_inbox_concurrent_duplicates_run_the_handler_once(engine: AsyncEngine, effects: sa.Table) -> None:
    consumer = f"plumbing-{uuid.uuid4().hex}"
    envelope = new_envelope()
    calls = 0

    async def effect(session: AsyncSession, envelope: Envelope) -> None:
        nonlocal calls
        calls += 1
        conn = await session.connection()
        await conn.execute(sa.insert(effects).values(consumer=consumer, event_id=envelope.id))

    once = transactional(make_session_factory(engine), INBOX, consumer, each(effect))
    await asyncio.gather(*(once(envelope) for _ in range(4)))

    assert calls == 1
    assert await count_rows(engine, effects, consumer, envelope.id) == 1


async def test_inbox_claim_rolls_back_with_a_failing_handler_so_the_redelivery_is_handled(
    engine: AsyncEngine, effects: sa.Table
) -> None:
    consumer = f"plumbing-{uuid.uuid4().hex}"
    envelope = new_envelope()
    attempts = 0

    async def fails_first(session: AsyncSession, envelope: Envelope) -> None:
        nonlocal attempts
        attempts += 1
        conn = await session.connection()
        await conn.execute(sa.insert(effects).values(consumer=consumer, event_id=envelope.id))
        if attempts == 1:
            raise RuntimeError("the handler failed after its effect")

    once = transactional(make_session_factory(engine), INBOX, consumer, each(fails_first))

    with pytest.raises(RuntimeError):
        await once(envelope)
    assert await count_rows(engine, INBOX, consumer, envelope.id) == 0
    assert await count_rows(engine, effects, consumer, envelope.id) == 0

    await once(envelope)  # the redelivery
    assert attempts == 2
    assert await count_rows(engine, INBOX, consumer, envelope.id) == 1
    assert await count_rows(engine, effects, consumer, envelope.id) == 1

    await once(envelope)  # and once handled, never again
    assert attempts == 2
    assert await count_rows(engine, effects, consumer, envelope.id) == 1


@dataclass
class BatchedRun:
    topic: str
    consumer: str
    calls: Counter[str]  # alone, batches, batches committed, events in committed batches
    seen: list[uuid.UUID]  # the events whose effect was written, in order (rolled-back ones included)


async def run_batched(
    broker: Broker, engine: AsyncEngine, effects: sa.Table, produced: list[Envelope], *, poison: uuid.UUID | None = None
) -> BatchedRun:
    """Produce `produced` (before the loop starts: one poll), then consume them as services do (a polled batch in one
    transaction, each event alone if that fails) until the last one is committed. The handler writes an effect row
    per event, and raises `PoisonMessage` for `poison`."""
    run = BatchedRun(await new_topic(broker.bootstrap, partitions=1, with_dlq=True), f"plumbing-{uuid.uuid4().hex}",
                     Counter(), [])  # fmt: skip

    async def effect(session: AsyncSession, envelope: Envelope) -> None:
        run.seen.append(envelope.id)
        conn = await session.connection()
        await conn.execute(sa.insert(effects).values(consumer=run.consumer, event_id=envelope.id))
        if envelope.id == poison:
            raise PoisonMessage("names an unknown task")

    factory = make_session_factory(engine)
    alone = transactional(factory, INBOX, run.consumer, each(effect))
    together = transactional_batch(factory, INBOX, run.consumer, each(effect))

    async def one(envelope: Envelope) -> None:
        run.calls["alone"] += 1
        await alone(envelope)

    async def batch(envelopes: Sequence[Envelope]) -> None:
        run.calls["batches"] += 1
        await together(envelopes)
        run.calls["batches committed"] += 1
        run.calls["events in committed batches"] += len(envelopes)

    async with started_producer(broker.bootstrap) as producer:
        await produce(producer, run.topic, [e.to_bytes() for e in produced], key=b"k")
        loop = ConsumerLoop(
            bootstrap_servers=broker.bootstrap, group=new_group(), topics=[run.topic], handler=one,
            producer=producer, batch_handler=batch,
        )  # fmt: skip
        async with running(loop.run()):
            await wait_for(
                lambda: count_rows(engine, INBOX, run.consumer, produced[-1].id), timeout=30,
                message="the last one committed",
            )  # fmt: skip
    return run


async def test_a_polled_batch_is_handled_in_one_transaction_once_per_event(
    broker: Broker, engine: AsyncEngine, effects: sa.Table
) -> None:
    first, second, last = new_envelope(1), new_envelope(2), new_envelope(3)
    run = await run_batched(broker, engine, effects, [first, first, second, last])

    assert run.seen == [first.id, second.id, last.id]  # in order, the duplicate once
    assert run.calls["batches"] == run.calls["batches committed"] >= 1
    assert run.calls["events in committed batches"] >= 3  # (a poll may stop short of the last: it goes alone)
    for envelope in (first, second, last):
        assert await count_rows(engine, effects, run.consumer, envelope.id) == 1
        assert await count_rows(engine, INBOX, run.consumer, envelope.id) == 1


async def test_a_failing_batch_is_rolled_back_and_handled_again_event_by_event(
    broker: Broker, engine: AsyncEngine, effects: sa.Table
) -> None:
    first, poison, last = new_envelope(1), new_envelope(2), new_envelope(3)
    run = await run_batched(broker, engine, effects, [first, poison, last], poison=poison.id)

    assert run.calls == {"batches": 1, "alone": 3}  # the batch failed, then each event alone
    assert [await count_rows(engine, effects, run.consumer, e.id) for e in (first, poison, last)] == [1, 0, 1]
    assert await count_rows(engine, INBOX, run.consumer, poison.id) == 0
    [dead] = await read_topic(broker.bootstrap, dead_letter_topic(run.topic))
    assert dead.value == poison.to_bytes()


# ----------------------------------------------------------------------------------------------- outbox


async def listening(engine: AsyncEngine, application_name: str) -> bool:
    async with engine.connect() as conn:
        count = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND query ILIKE 'LISTEN%'"
                ),
                {"name": application_name},
            )
        ).scalar_one()
        return bool(count)


async def test_relay_publishes_enqueued_rows_in_order_when_notified_and_marks_them_published(
    broker: Broker, engine: AsyncEngine, database_url: str
) -> None:
    topic = await new_topic(broker.bootstrap, partitions=1)
    factory = make_session_factory(engine)
    envelopes = [new_envelope(i) for i in range(25)]
    listener_name = f"plumbing-relay-{uuid.uuid4().hex[:12]}"
    published_before = sample("quanzu_outbox_published_total", service="feedback")

    async with started_producer(broker.bootstrap) as producer:
        # A relay that would not poll again for a minute: only the NOTIFY of the commit can wake it in time.
        relay = relay_for(engine, with_application_name(database_url, listener_name), producer, idle_poll_s=60)
        async with running(relay.run()) as task:
            await wait_for(lambda: listening(engine, listener_name), timeout=10, message="the relay to LISTEN")
            await enqueue(factory, topic, envelopes[:10], key="a")
            await enqueue(factory, topic, envelopes[10:], key=None)
            await wait_for(lambda: all_published(engine, envelopes), timeout=10, message="rows published")
            assert not task.done()

    assert envelope_ids(await read_topic(broker.bootstrap, topic)) == [e.id for e in envelopes]
    assert sample("quanzu_outbox_published_total", service="feedback") >= published_before + len(envelopes)


async def test_a_relay_publishes_nothing_while_another_holds_the_turn(
    broker: Broker, engine: AsyncEngine, database_url: str
) -> None:
    topic = await new_topic(broker.bootstrap, partitions=1)
    envelopes = [new_envelope(i) for i in range(3)]
    await enqueue(make_session_factory(engine), topic, envelopes)
    async with started_producer(broker.bootstrap) as producer:
        relay = relay_for(engine, database_url, producer)
        async with engine.connect() as other, other.begin():  # another replica's relay, mid-publish
            await other.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": relay._lock_key})
            assert await relay.publish_batch() is None
            assert set((await published_at(engine, envelopes)).values()) == {None}
        assert await relay.publish_batch() == len(envelopes)
        assert await relay.publish_batch() == 0
    assert envelope_ids(await read_topic(broker.bootstrap, topic)) == [e.id for e in envelopes]


async def test_two_relays_publish_each_row_once_in_order(
    broker: Broker, engine: AsyncEngine, database_url: str
) -> None:
    """Replicas' relays, all woken by every commit, take turns: each row reaches the topic once, in outbox order."""
    topic = await new_topic(broker.bootstrap, partitions=1)
    factory = make_session_factory(engine)
    envelopes = [new_envelope(i) for i in range(40)]
    async with started_producer(broker.bootstrap) as producer:
        relays = [relay_for(engine, database_url, producer, idle_poll_s=0.2) for _ in range(2)]
        async with running(relays[0].run()), running(relays[1].run()):
            for i in range(0, len(envelopes), 2):
                await enqueue(factory, topic, envelopes[i : i + 2])  # many small commits, as single posts make
            await wait_for(lambda: all_published(engine, envelopes), timeout=20, message="rows published")
    assert envelope_ids(await read_topic(broker.bootstrap, topic)) == [e.id for e in envelopes]


def publishing_failures(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.name == "shared.outbox" and "publishing failed" in r.getMessage())


@pytest.mark.restarts_broker
async def test_relay_keeps_rows_pending_while_the_broker_is_down_and_publishes_them_when_it_is_back(
    broker: Broker, engine: AsyncEngine, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.outbox")
    topic = await new_topic(broker.bootstrap, partitions=1)
    factory = make_session_factory(engine)
    before, during = [new_envelope(0)], [new_envelope(i) for i in range(1, 6)]

    async with started_producer(broker.bootstrap) as producer:
        relay = relay_for(engine, database_url, producer, idle_poll_s=0.2)
        async with running(relay.run()) as task:
            await enqueue(factory, topic, before)
            await wait_for(lambda: all_published(engine, before), timeout=10, message="the first row published")
            failures_before = publishing_failures(caplog)
            try:
                await asyncio.to_thread(broker.stop)
                await enqueue(factory, topic, during)
                # A publish attempt fails when the producer's request times out (10 s).
                await wait_for(
                    lambda: publishing_failures(caplog) > failures_before,
                    timeout=60,
                    interval=0.2,
                    message="the relay to fail publishing",
                )
                assert not task.done()  # it keeps retrying
                assert set((await published_at(engine, during)).values()) == {None}
            finally:
                await asyncio.to_thread(broker.start)
                await ensure_topics(broker.bootstrap)
            # The broker came back empty: our topic is gone. Re-create it unless the relay's retry already did.
            with contextlib.suppress(TopicAlreadyExistsError):
                await create_topics(broker.bootstrap, {topic: 1})
            await wait_for(lambda: all_published(engine, during), timeout=60, interval=0.2, message="rows published")
            assert not task.done()

    # The row published before the outage went with the broker's memory; the others are all there, in order.
    assert envelope_ids(await read_topic(broker.bootstrap, topic)) == [e.id for e in during]


async def test_replay_since_republishes_the_rows_created_since_then(
    broker: Broker, engine: AsyncEngine, database_url: str
) -> None:
    topic = await new_topic(broker.bootstrap, partitions=1)
    factory = make_session_factory(engine)
    old, recent = [new_envelope(0)], [new_envelope(1), new_envelope(2)]

    async with started_producer(broker.bootstrap) as producer:
        relay = relay_for(engine, database_url, producer, idle_poll_s=0.2)
        async with running(relay.run()):
            await enqueue(factory, topic, old)
            await wait_for(lambda: all_published(engine, old), timeout=10, message="the old row published")
            since = await db_now(engine)
            await enqueue(factory, topic, recent)
            await wait_for(lambda: all_published(engine, recent), timeout=10, message="recent rows published")
            old_mark = (await published_at(engine, old))[old[0].id]

            assert await replay_since(engine, OUTBOX, since) == len(recent)

            async def republished() -> bool:
                return len(await read_topic(broker.bootstrap, topic)) == 5

            await wait_for(republished, timeout=15, interval=0.1, message="the recent rows republished")
            await wait_for(lambda: all_published(engine, recent), timeout=10, message="rows marked again")

    ids = envelope_ids(await read_topic(broker.bootstrap, topic))
    assert ids == [old[0].id, recent[0].id, recent[1].id, recent[0].id, recent[1].id]
    assert (await published_at(engine, old))[old[0].id] == old_mark
