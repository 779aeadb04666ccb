"""A consumer on a broker that lost its data (the development broker, restarted empty) reads the new log from its
start: the product fix the fault run led to (`ConsumerLoop._rewind_recreated`).

A consumer handling a batch when the broker is lost commits its end (offset 30) to the new, empty broker, which
tansu 0.6.0 accepts from a member it does not know; it then fetches from offset 30 of the new log. Apache Kafka would
answer that fetch with OFFSET_OUT_OF_RANGE, and the consumer would start again at the earliest offset; tansu answers
nothing, and the first 30 records published after the loss (new warnings, the events `quanzu outbox replay`
republishes) were never handled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.devinfra import Broker, free_port, wait_for
from shared.events import Envelope
from shared.kafka import ConsumerLoop, make_producer

TOPIC = "faults.broker-loss"


def envelope(n: int) -> Envelope:
    return Envelope(id=uuid.uuid4(), type="faults.tested", source="test_broker_loss", time=datetime.now(UTC),
                    data={"n": n})  # fmt: skip


async def create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1), NewTopic(f"{TOPIC}.dlq", 1, 1)])
    finally:
        await admin.close()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    with (tmp_path / "tansu.log").open("ab") as log:
        broker = Broker(free_port(), log=log)
        await asyncio.to_thread(broker.start)
        try:
            await create_topic(broker.bootstrap)
            yield broker
        finally:
            await asyncio.to_thread(broker.stop)


async def test_after_the_broker_lost_its_data_records_below_the_old_position_are_handled(broker: Broker) -> None:
    handled: list[int] = []
    lost, back = asyncio.Event(), asyncio.Event()

    async def handler(env: Envelope) -> None:
        if env.data["n"] == 29:  # the broker is lost while this one is being handled
            lost.set()
            await back.wait()
        handled.append(int(env.data["n"]))

    producer = make_producer(broker.bootstrap, client_id="test-broker-loss")
    await producer.start()
    loop = ConsumerLoop(bootstrap_servers=broker.bootstrap, group=f"broker-loss-{uuid.uuid4().hex[:8]}",
                        topics=[TOPIC], handler=handler, producer=producer)  # fmt: skip
    consuming = asyncio.create_task(loop.run())
    try:
        for n in range(30):
            await producer.send_and_wait(TOPIC, envelope(n).to_bytes(), key=b"k")
        await asyncio.wait_for(lost.wait(), 60)

        # Blocking the event loop holds the consumer still while the broker is lost and back (as `LocalSystem`
        # holds the processes): its batch's commit then reaches the new broker before it learns to join again.
        broker.stop()
        broker.start()  # empty
        await create_topic(broker.bootstrap)
        back.set()
        for n in range(30, 40):  # fewer than the consumer had read: all below its old position
            await producer.send_and_wait(TOPIC, envelope(n).to_bytes(), key=b"k")

        await wait_for(lambda: set(range(30, 40)) <= set(handled), timeout=60, message="the records after the loss")
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await producer.stop()
    assert sorted(handled) == list(range(40))  # each once: nothing from the old log came back
