"""Rebuilding the read model: clear it, then replay its topics from their start through the same handlers.

Run with the feedback service stopped (`quanzu feedback rebuild`). The replay reads with no consumer group, up
to the end offsets it saw when it began; the handlers record each event in the inbox under the live consumer's
group, so when the service starts again it skips what the replay already applied and resumes from its own
committed offsets. Handlers are upserts, so the result does not depend on which of the two applied an event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from services.feedback.cases import repository
from services.feedback.cases.handlers import read_model_consumers
from services.feedback.db import INBOX
from services.feedback.settings import FeedbackSettings
from shared.db import SessionFactory, unit_of_work
from shared.events import Envelope, Topic, unreadable
from shared.inbox import SessionBatchHandler, transactional
from shared.kafka import read_to_end
from shared.scope import system_settings

log = logging.getLogger(__name__)


@dataclass
class Replayed:
    applied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # undecodable or rejected: the live consumer DLQ'd them


async def clear(factory: SessionFactory, settings: FeedbackSettings) -> None:
    groups = [group for group, _, _ in _consumers(settings)]
    async with unit_of_work(factory, system_settings()) as session:
        await repository.clear_read_model(session, INBOX, groups)


async def replay(factory: SessionFactory, settings: FeedbackSettings) -> Replayed:
    result = Replayed()
    for group, topic, handler in _consumers(settings):
        apply = transactional(factory, INBOX, group, handler)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            await consumer.topics()  # loads the cluster's metadata
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not partitions:
                continue
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            applied = skipped = 0
            async for tp, records in read_to_end(consumer, partitions, timeout_ms=1000):
                for record in records:
                    try:
                        envelope = Envelope.model_validate_json(record.value or b"")
                        if (reason := unreadable(topic, envelope)) is not None:
                            raise ValueError(reason)  # the live consumer dead-lettered it: so does the replay
                        await apply(envelope)
                        applied += 1
                    except (ValidationError, ValueError) as exc:
                        skipped += 1
                        log.warning("replay skipped %s[%d]@%d: %s", topic, tp.partition, record.offset, exc)
            result.applied[topic], result.skipped[topic] = applied, skipped
        finally:
            await consumer.stop()
    return result


def _consumers(settings: FeedbackSettings) -> list[tuple[str, Topic, SessionBatchHandler]]:
    return read_model_consumers(settings.subject_key_secret.get_secret_value(), settings.post_warning_window)
