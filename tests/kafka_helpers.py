"""Reading topics back with a real aiokafka consumer."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import Envelope


async def read_envelopes(
    bootstrap: str, topic: str, until: Callable[[list[Envelope]], bool], *, timeout: float = 20.0
) -> list[Envelope]:
    """Read `topic` from its beginning (no consumer group) until `until(envelopes)` holds or time runs out."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    envelopes: list[Envelope] = []
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                envelopes.extend(Envelope.model_validate_json(r.value) for r in records)
            if until(envelopes):
                return envelopes
        raise TimeoutError(f"{topic}: condition not met after {timeout}s with {len(envelopes)} envelopes read")
    finally:
        await consumer.stop()


def with_warning_ids(ids: set[str]) -> Callable[[list[Envelope]], bool]:
    def done(envelopes: list[Envelope]) -> bool:
        return ids <= {e.data.get("warning_id") for e in envelopes}

    return done
