"""Kafka plumbing every service uses: an acknowledged producer, topic creation, and the consumer loop.

At-least-once everywhere: the producer waits for all in-sync replicas (acks=all, no idempotent producer:
the development broker rejects it), consumers commit offsets only after handling, and handlers are
idempotent by event id (see `shared.inbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError

from shared.db import is_database_unavailable
from shared.events import TOPIC_PARTITIONS, Envelope, dead_letter_topic, unreadable
from shared.metrics import CONSUMER_LAG, DLQ_MESSAGES, EVENTS_HANDLED

log = logging.getLogger(__name__)


class PoisonMessage(Exception):
    """A message that can never be handled (bad shape, unknown reference): it goes to the dead-letter topic."""


def make_producer(bootstrap_servers: str, *, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
        max_request_size=2 * 1024 * 1024,
    )


async def ensure_topics(bootstrap_servers: str, topics: Iterable[str] | None = None, *, replication: int = 1) -> None:
    """Create the topics that do not exist yet, with the partition counts of `TOPIC_PARTITIONS`."""
    wanted = {t: TOPIC_PARTITIONS[t] for t in (topics or TOPIC_PARTITIONS)}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, n, replication) for t, n in wanted.items() if t not in existing]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()


async def read_to_end(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], *, timeout_ms: int = 500
) -> AsyncIterator[tuple[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]:
    """The records of `partitions` (assigned to `consumer`, each at the position to read from) up to where each
    partition ended when the read began, by partition in batches.

    Where a partition ends is taken from the first fetch's high watermark, not from ListOffsets alone: the
    development broker (tansu 0.6.0) answers ListOffsets with the base offset of the partition's last batch plus
    one, short of the batch's other records, so a read bounded by `end_offsets()` missed the last records of a
    batch produced together (seen as a dead letter that never arrived, a replay short of its last events)."""
    tps = list(partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    # A partition with any record has a ListOffsets end above its start, so the empty ones are the only ones left out.
    remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
    settled: set[TopicPartition] = set()
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=timeout_ms)
        for tp in remaining - settled:
            if (highwater := consumer.highwater(tp)) is not None:
                ends[tp] = max(ends[tp], highwater)
                settled.add(tp)
        for tp, records in batches.items():
            wanted = [r for r in records if r.offset < ends[tp]]
            if wanted:
                yield tp, wanted
        for tp in list(remaining):
            if tp in settled and await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)


Handler = Callable[[Envelope], Awaitable[None]]
# A partition's polled events at once, with the effect of `Handler` on each in turn (`shared.inbox.transactional`):
# a batch that fails is handled again one by one, so that only the event at fault is retried or dead-lettered.
BatchHandler = Callable[[Sequence[Envelope]], Awaitable[None]]


class ConsumerLoop:
    """Consumes topics as a group, hands each envelope to `handler`, commits after handling; up to `concurrency`
    partitions at once, each in its order.

    A message that cannot be decoded, or is of a type or schema version its topic does not carry
    (`shared.events.unreadable`), or whose handler raises `PoisonMessage` or a validation error, or
    that keeps failing for another reason, goes to `<topic>.dlq` with the error in its headers, and the
    partition moves on. An unreachable database is not the message's fault: that is retried until it
    comes back, without dead-lettering anything.

    With a `batch_handler`, a partition's polled records go to it at once; if it raises, they are handled one by
    one as above, so that a bad message costs its batch one rolled-back transaction and nothing else.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group: str,
        topics: list[str],
        handler: Handler,
        producer: AIOKafkaProducer,
        max_attempts: int = 3,
        lag_interval_s: float = 5.0,
        concurrency: int = 4,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.batch_handler = batch_handler
        self.group = group
        self.topics = topics
        self.handler = handler
        self.producer = producer
        self.max_attempts = max_attempts
        self.lag_interval_s = lag_interval_s
        self.concurrency = concurrency
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group,
            client_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=200,
        )
        self._consumer = consumer
        while True:
            try:
                await consumer.start()
                break
            except KafkaError as exc:
                log.warning("consumer %s cannot reach the broker yet: %s", self.group, exc)
                await asyncio.sleep(1)
        lag_task = asyncio.create_task(self._export_lag(consumer))
        try:
            lanes = asyncio.Semaphore(self.concurrency)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                # Partitions are independent (a subject's or a case's events share one), so they are handled side
                # by side: a handler mostly waits on the database, and one partition at a time left both the
                # service and PostgreSQL idle. Within a partition, order is kept.
                await asyncio.gather(*(self._partition(consumer, lanes, tp, rs) for tp, rs in batches.items()))
                await self._rewind_recreated(consumer)
        finally:
            lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task
            await consumer.stop()

    async def _partition(
        self,
        consumer: AIOKafkaConsumer,
        lanes: asyncio.Semaphore,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
    ) -> None:
        async with lanes:
            if not await self._handle_together(records):
                for record in records:
                    await self._handle(record)
            try:
                await consumer.commit({tp: records[-1].offset + 1})
            except (CommitFailedError, IllegalStateError):
                # A rebalance took the partition (during the commit, or already while its records were
                # handled: "not assigned"); its new owner re-reads, and handlers are idempotent.
                log.info("commit for %s lost to a rebalance", tp)

    async def _rewind_recreated(self, consumer: AIOKafkaConsumer) -> None:
        """Read again from its start a partition whose log now ends before our position: its topic was created anew
        (a broker that lost its data). Apache Kafka answers OFFSET_OUT_OF_RANGE there, and the consumer resets to the
        earliest offset by itself; the development broker answers nothing, and every record landing below our
        position (those `quanzu outbox replay` republishes, and new ones) would be skipped. Handlers are idempotent."""
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                if highwater is not None and await consumer.position(tp) > highwater:
                    log.warning("%s/%d now ends before our position: reading it again from its start", *tp)
                    await consumer.seek_to_beginning(tp)

    async def _handle_together(self, records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        """Hand the records to the batch handler at once; False if there is none, or if the batch failed, to be
        handled one by one (its transaction rolled back, nothing of it happened)."""
        if self.batch_handler is None or len(records) < 2:
            return False
        readable = [(r, e) for r in records if (e := await self._readable(r)) is not None]
        try:
            await self.batch_handler([envelope for _, envelope in readable])
        except Exception as exc:
            log.info("a batch of %d events failed (%s: %s); handling them one by one", len(readable),
                     type(exc).__name__, _short(exc))  # fmt: skip
            for record, envelope in readable:
                await self._handle_envelope(record, envelope)
            return True
        for record, _ in readable:
            EVENTS_HANDLED.labels(record.topic, self.group, "handled").inc()
        return True

    async def _readable(self, record: ConsumerRecord[bytes, bytes]) -> Envelope | None:
        """The record's envelope; None if it cannot be read, and then it is dead-lettered."""
        try:
            envelope = Envelope.model_validate_json(record.value or b"")
        except ValidationError as exc:
            await self._dead_letter(record, f"undecodable envelope: {_short(exc)}")
            return None
        if (reason := unreadable(record.topic, envelope)) is not None:
            await self._dead_letter(record, f"unreadable envelope: {reason}")
            return None
        return envelope

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        envelope = await self._readable(record)
        if envelope is not None:
            await self._handle_envelope(record, envelope)

    async def _handle_envelope(self, record: ConsumerRecord[bytes, bytes], envelope: Envelope) -> None:
        attempts = 0
        while True:
            try:
                await self.handler(envelope)
                EVENTS_HANDLED.labels(record.topic, self.group, "handled").inc()
                return
            except (PoisonMessage, ValidationError) as exc:
                await self._dead_letter(record, f"{type(exc).__name__}: {_short(exc)}")
                return
            except Exception as exc:
                if is_database_unavailable(exc):
                    log.warning("database unavailable while handling %s; retrying", envelope.id)
                    await asyncio.sleep(1)
                    continue
                attempts += 1
                if attempts >= self.max_attempts:
                    log.exception("giving up on event %s after %d attempts", envelope.id, attempts)
                    await self._dead_letter(record, f"{type(exc).__name__}: {_short(exc)}")
                    return
                await asyncio.sleep(0.2 * 2**attempts)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        headers = [
            *(record.headers or ()),
            ("dlq.error", error.encode()),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            ("dlq.group", self.group.encode()),
        ]
        await self.producer.send_and_wait(
            dead_letter_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        DLQ_MESSAGES.labels(record.topic).inc()
        EVENTS_HANDLED.labels(record.topic, self.group, "dead_lettered").inc()
        log.warning("message %s/%d@%d dead-lettered: %s", record.topic, record.partition, record.offset, error)

    async def _export_lag(self, consumer: AIOKafkaConsumer) -> None:
        # The development broker cannot answer list_consumer_group_offsets: compute lag from our own view.
        while True:
            await asyncio.sleep(self.lag_interval_s)
            try:
                assigned: set[TopicPartition] = consumer.assignment()
                if not assigned:
                    continue
                # The high watermark of our own fetches, where we have one: the development broker's ListOffsets
                # falls short of a batch's last records (see `read_to_end`).
                ends = await consumer.end_offsets(list(assigned))
                per_topic: dict[str, int] = {}
                for tp in assigned:
                    committed = await consumer.committed(tp) or 0
                    end = max(ends[tp], consumer.highwater(tp) or 0)
                    per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(end - committed, 0)
                for topic, lag in per_topic.items():
                    CONSUMER_LAG.labels(topic, self.group).set(lag)
            except Exception as exc:  # lag is best effort; never let it stop consuming
                log.debug("lag export failed: %s", exc)


def _short(exc: BaseException, limit: int = 500) -> str:
    # Validation errors would echo the input (personal data, on warnings.received): keep field and message only.
    if isinstance(exc, ValidationError):
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False))
    else:
        text = str(exc)
    return text.replace("\n", " ")[:limit]
