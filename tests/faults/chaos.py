"""Faults on the Kafka side: every message delivered again out of order, and poison on every partition.

- `redeliver` reads each topic from its start and produces every message once more, to its own partition, in
  one shuffled order across all topics and partitions: every event is then delivered twice, its copy after
  later events of its own key and interleaved with new traffic. Consumers must drop the copies by event id.
- `inject_poison` puts on every partition of every topic: bytes that are not JSON, JSON that is not an
  envelope, an envelope of the topic's own event type whose data does not validate, a valid event of a schema
  version no consumer reads yet, and an event of a type the topic does not carry. Each consumer group must
  dead-letter every one of them to `<topic>.dlq` (the last two would otherwise be misread or dropped unseen)
  and commit past them: the partition moves on.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import BaseModel

from shared.events import (
    AreaUpsertedV1,
    CaseOpenedV1,
    Envelope,
    OutcomeRecordedV1,
    SubjectData,
    Topic,
    WarningReceivedV1,
    dead_letter_topic,
)
from shared.kafka import make_producer, read_to_end

#: The consumer groups of each topic, and the schema of the service whose inbox records what each one handled.
CONSUMERS: dict[str, dict[str, str]] = {
    Topic.WARNINGS_RECEIVED: {"dispatch-warnings": "dispatch", "feedback-warnings": "feedback"},
    Topic.DISPATCH_EVENTS: {"feedback-dispatch-events": "feedback"},
    Topic.FEEDBACK_OUTCOMES: {"dispatch-outcomes": "dispatch"},
    Topic.REGISTRY_EVENTS: {"intake-registry": "intake", "feedback-registry": "feedback"},
}
POISON_HEADER = "fault.poison"
#: Valid-looking references the phantom events carry; no acknowledged warning, case or area has them.
PHANTOM_AREA = "999999-999"
PHANTOM_PHONE_PREFIX = "1389"


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every message of `topic` from its start up to its end when called (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        while partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or None
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async for _, batch in read_to_end(consumer, tps):
            records += batch
        return records
    finally:
        await consumer.stop()


async def redeliver(bootstrap: str, topics: Iterable[str], rng: random.Random) -> int:
    """Produce every message of `topics` again, to its own partition, in a shuffled order; returns how many."""
    records = [r for topic in topics for r in await read_all(bootstrap, topic)]
    rng.shuffle(records)
    producer = make_producer(bootstrap, client_id="fault-redeliver")
    await producer.start()
    try:
        futures = [
            await producer.send(r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers or ()))
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(records)


@dataclass(frozen=True)
class Poison:
    topic: str
    partition: int
    kind: str
    marker: str
    offset: int = -1  # where it landed


def _envelope(event_type: str, data: BaseModel | dict[str, object], version: int = 1) -> Envelope:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return Envelope(
        id=uuid.uuid4(), type=event_type, source="quanzu/fault-suite", time=datetime.now(UTC),
        schema_version=version, data=payload,
    )  # fmt: skip


def phantom_event(topic: str, partition: int) -> Envelope:
    """A valid v1 event of the topic's main type that refers to nothing real, labelled as a future version."""
    now = datetime.now(UTC)
    data: BaseModel
    if topic == Topic.WARNINGS_RECEIVED:
        phone = f"{PHANTOM_PHONE_PREFIX}{partition:07d}"
        data = WarningReceivedV1(
            warning_id=uuid.uuid4(), source="fault-phantom", external_id=f"PHANTOM-{uuid.uuid4().hex}",
            issued_at=now, received_at=now, subject=SubjectData(phone=phone), subject_key=f"phantom-{partition}",
            area_code=None, assigned=False, fraud_type="other", risk_level="low", in_progress=False,
            amount_at_risk=None, evidence={},
        )  # fmt: skip
        event_type = WarningReceivedV1.TYPE
    elif topic == Topic.DISPATCH_EVENTS:
        data = CaseOpenedV1(
            case_id=uuid.uuid4(), warning_id=uuid.uuid4(), subject_key=f"phantom-{partition}", source="fault-phantom",
            area_code=None, station=None, street=None, risk_level="low", fraud_type="other", in_progress=False,
            residency="unknown", rewarned=False, opened_at=now,
        )  # fmt: skip
        event_type = CaseOpenedV1.TYPE
    elif topic == Topic.FEEDBACK_OUTCOMES:
        data = OutcomeRecordedV1(outcome_id=uuid.uuid4(), task_id=uuid.uuid4(), kind="call", call_result="no_answer",
                                 recorded_at=now)  # fmt: skip
        event_type = OutcomeRecordedV1.TYPE
    else:
        data = AreaUpsertedV1(area_code=PHANTOM_AREA, area_name="幻影警务区", station="幻影派出所", street="幻影街道",
                              district="幻影区")  # fmt: skip
        event_type = AreaUpsertedV1.TYPE
    return _envelope(event_type, data, version=99)


def main_type(topic: str) -> str:
    types: dict[str, str] = {
        Topic.WARNINGS_RECEIVED: WarningReceivedV1.TYPE,
        Topic.DISPATCH_EVENTS: CaseOpenedV1.TYPE,
        Topic.FEEDBACK_OUTCOMES: OutcomeRecordedV1.TYPE,
        Topic.REGISTRY_EVENTS: AreaUpsertedV1.TYPE,
    }
    return types[topic]


def poison_messages(topic: str, partition: int) -> list[tuple[str, bytes]]:
    """(kind, value) of the five poison messages for one partition."""
    return [
        ("undecodable", b"\x00\xff not JSON \xfe{"),
        ("not_an_envelope", b'{"poison": true, "data": []}'),
        ("invalid_data", _envelope(main_type(topic), {"poison": True}).to_bytes()),
        ("future_version", phantom_event(topic, partition).to_bytes()),
        ("unknown_type", _envelope("fault.unknown-type", {"poison": True}).to_bytes()),
    ]


async def inject_poison(bootstrap: str, topics: Iterable[str]) -> list[Poison]:
    producer = make_producer(bootstrap, client_id="fault-poison")
    await producer.start()
    injected: list[Poison] = []
    try:
        for topic in topics:
            partitions = await producer.partitions_for(topic)
            for partition in sorted(partitions):
                for kind, value in poison_messages(topic, partition):
                    marker = f"{kind}:{uuid.uuid4().hex}"
                    sent = await producer.send_and_wait(
                        topic, value, key=b"poison", partition=partition, headers=[(POISON_HEADER, marker.encode())]
                    )
                    injected.append(Poison(topic, partition, kind, marker, sent.offset))
    finally:
        await producer.stop()
    return injected


async def dead_lettered(bootstrap: str, topics: Iterable[str]) -> set[tuple[str, str]]:
    """(poison marker, consumer group) of every poison message found on the topics' dead-letter topics."""
    found: set[tuple[str, str]] = set()
    for topic in topics:
        for record in await read_all(bootstrap, dead_letter_topic(topic)):
            headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
            if POISON_HEADER in headers:
                found.add((headers[POISON_HEADER], headers.get("dlq.group", "?")))
    return found


def expected_dead_letters(poisons: Iterable[Poison]) -> set[tuple[str, str]]:
    return {(p.marker, group) for p in poisons for group in CONSUMERS[p.topic]}


async def stuck_behind_poison(bootstrap: str, poisons: Iterable[Poison]) -> list[str]:
    """The consumer groups and partitions whose committed offset has not passed the last poison message yet."""
    last: dict[str, dict[TopicPartition, int]] = {}
    for p in poisons:
        tp = TopicPartition(p.topic, p.partition)
        for group in CONSUMERS[p.topic]:
            last.setdefault(group, {})[tp] = max(last.get(group, {}).get(tp, -1), p.offset)
    stuck = []
    for group, offsets in last.items():
        # Reads the group's committed offsets without joining it (no subscription: no rebalance of the service).
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            for tp, offset in offsets.items():
                if (await consumer.committed(tp) or 0) <= offset:
                    stuck.append(f"{group}@{tp.topic}/{tp.partition}")
        finally:
            await consumer.stop()
    return stuck
