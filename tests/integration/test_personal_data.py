"""Personal data stays where it must: full phone and ID numbers appear in no log line and on no topic but
warnings.received, and in no response but an admin's access-logged read."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.intake.warnings.service import erase_personal_data
from shared.db import make_engine, make_session_factory, unit_of_work
from shared.devinfra import Broker
from shared.events import TOPIC_PARTITIONS, Topic, dead_letter_topic
from shared.kafka import read_to_end
from shared.logs import PersonalDataFilter, mask_personal
from shared.scope import system_settings
from tests.conftest import AppClient, Member, SourceCredentials
from tests.factories import mobile, valid_id_number, warning_record


async def _all_messages(bootstrap: str, topics: list[str]) -> list[tuple[str, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in (consumer.partitions_for_topic(t) or range(TOPIC_PARTITIONS[t]))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        out: list[tuple[str, bytes]] = []
        async for tp, records in read_to_end(consumer, partitions):
            out.extend((tp.topic, r.value or b"") for r in records)
        return out
    finally:
        await consumer.stop()


async def test_full_personal_data_appears_only_where_it_must(
    intake: AppClient,
    source: SourceCredentials,
    admin_member: Member,
    demo_areas: set[str],
    broker: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    phones = [mobile() for _ in range(3)]
    ids = [valid_id_number() for _ in range(3)]
    posted = []
    for phone, id_number in zip(phones, ids, strict=True):
        record = warning_record(subject={"phone": phone, "id_number": id_number, "name": "李四", "residency": "worker"})
        response = await intake.post("/v1/warnings", json=record, headers=source.headers)
        assert response.status_code == 202
        posted.append(response.json()["id"])
    # the mistakes a client makes must not echo the data back either
    bad = warning_record(subject={"phone": phones[0], "id_number": ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1")})
    rejected = await intake.post("/v1/warnings", json=bad, headers=source.headers)
    assert rejected.status_code == 422
    assert ids[0][:-1] not in rejected.text
    conflict = await intake.post("/v1/warnings", json={**bad, "subject": {"phone": phones[0]}}, headers=source.headers)
    assert phones[0] not in conflict.text

    masked = await intake.get(f"/v1/warnings/{posted[0]}", headers=source.headers)
    assert phones[0] not in masked.text and ids[0] not in masked.text
    full = await intake.get(f"/v1/warnings/{posted[0]}?reason=test", headers=admin_member.headers)
    assert full.json()["subject"]["phone"] == phones[0]  # the one place: an admin's access-logged read
    log = await intake.get(f"/v1/admin/access-log?object_id={posted[0]}", headers=admin_member.headers)
    assert [e["username"] for e in log.json()["items"]] == [admin_member.username]

    # warnings.received (and its dead-letter copy) is the one topic that carries subjects in full
    carrying = {Topic.WARNINGS_RECEIVED, dead_letter_topic(Topic.WARNINGS_RECEIVED)}
    other_topics = [t for t in TOPIC_PARTITIONS if t not in carrying]
    messages = await _all_messages(broker.bootstrap, other_topics)
    texts = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    for value in phones + ids:
        assert not [t for t in texts if value in t], f"{value[:3]}… in the logs"
        assert not [topic for topic, body in messages if value.encode() in body], f"{value[:3]}… on a topic"


def test_the_log_filter_masks_what_slips_through() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "subject %s id %s", ("13800138000", "110101199003078515"), None
    )
    assert PersonalDataFilter().filter(record)
    assert record.getMessage() == "subject 138****8000 id 11**************15"
    assert mask_personal("warning 0fe8d1a9-23c8-4158-92b5-4c38b21c0690 offset 123456789012") == (
        "warning 0fe8d1a9-23c8-4158-92b5-4c38b21c0690 offset 123456789012"
    )


async def test_retention_erases_personal_fields_and_keeps_the_counts(
    intake: AppClient, source: SourceCredentials, admin_member: Member, database_url: str
) -> None:
    response = await intake.post("/v1/warnings", json=warning_record(), headers=source.headers)
    warning_id = response.json()["id"]
    engine = make_engine(database_url, role="quanzu_intake_app")
    try:
        async with unit_of_work(make_session_factory(engine), system_settings()) as session:
            await session.exec(  # type: ignore[call-overload]
                sa.text("UPDATE intake.warnings SET received_at = received_at - interval '200 days' WHERE id = :id"),
                params={"id": warning_id},
            )
            erased = await erase_personal_data(session, 180)
    finally:
        await engine.dispose()
    assert erased >= 1
    read = await intake.get(f"/v1/warnings/{warning_id}", headers=admin_member.headers)
    assert read.status_code == 200
    body = read.json()
    assert body["subject"] == {"residency": "resident", "erased": True}
    assert (body["fraud_type"], body["risk_level"], body["area_code"]) == ("investment", "high", "370202-012")
