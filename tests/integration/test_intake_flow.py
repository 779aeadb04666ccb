"""Intake end to end: HTTP in, PostgreSQL, the outbox relay, the topic read back with a real consumer."""

from __future__ import annotations

from typing import Any

from shared.events import Topic
from shared.personal import subject_key
from tests.conftest import SUBJECT_SECRET, AppClient, SourceCredentials
from tests.factories import warning_record
from tests.kafka_helpers import read_envelopes, with_warning_ids


async def test_posted_warning_reaches_the_topic_in_the_contract_envelope(
    intake: AppClient, source: SourceCredentials, demo_areas: set[str], broker: Any
) -> None:
    record = warning_record(subject={"phone": "+86 138-0013-8000", "name": "张三", "residency": "resident"})
    response = await intake.post("/v1/warnings", json=record, headers=source.headers)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted"
    assert body["duplicate"] is False
    assert body["assigned"] is True

    [envelope] = [
        e
        for e in await read_envelopes(broker.bootstrap, Topic.WARNINGS_RECEIVED, with_warning_ids({body["id"]}))
        if e.data["warning_id"] == body["id"]
    ]
    assert envelope.type == "warning.received"
    assert envelope.schema_version == 1
    assert envelope.subject == body["id"]
    assert envelope.data["subject"]["phone"] == "13800138000"
    assert envelope.data["subject_key"] == subject_key(SUBJECT_SECRET, phone="13800138000", id_number=None)
    assert envelope.data["source"] == source.name
    assert envelope.data["external_id"] == record["external_id"]
    assert envelope.data["area_code"] == "370202-012"


async def test_the_same_record_again_is_a_duplicate_and_changed_content_is_a_conflict(
    intake: AppClient, source: SourceCredentials
) -> None:
    record = warning_record()
    first = await intake.post("/v1/warnings", json=record, headers=source.headers)
    again = await intake.post("/v1/warnings", json=record, headers=source.headers)
    changed = await intake.post("/v1/warnings", json={**record, "risk_level": "low"}, headers=source.headers)

    assert first.status_code == 202
    assert again.status_code == 202
    assert again.json() == {**first.json(), "duplicate": True}
    assert changed.status_code == 409
    assert changed.headers["content-type"] == "application/problem+json"
    assert changed.json()["id"] == first.json()["id"]


async def test_unknown_or_missing_area_is_accepted_into_the_unassigned_queue(
    intake: AppClient, source: SourceCredentials, demo_areas: set[str]
) -> None:
    unknown = await intake.post("/v1/warnings", json=warning_record(area_code="999999-999"), headers=source.headers)
    missing = await intake.post("/v1/warnings", json=warning_record(area_code=None), headers=source.headers)

    for response in (unknown, missing):
        assert response.status_code == 202, response.text
        assert response.json()["assigned"] is False
        assert response.json()["queue"] == "unassigned"
    assert "999999-999" in unknown.json()["detail"]


async def test_a_source_reads_its_own_warning_masked_and_not_another_sources(
    intake: AppClient, source: SourceCredentials, common_settings: Any
) -> None:
    from tests.conftest import new_source

    record = warning_record()
    created = (await intake.post("/v1/warnings", json=record, headers=source.headers)).json()

    mine = await intake.get(f"/v1/warnings/{created['id']}", headers=source.headers)
    other = await new_source(common_settings)
    theirs = await intake.get(f"/v1/warnings/{created['id']}", headers=other.headers)

    assert mine.status_code == 200
    subject = mine.json()["subject"]
    phone = record["subject"]["phone"]
    assert subject["phone"] == phone[:3] + "****" + phone[-4:]
    assert subject["id_number"] != record["subject"]["id_number"]
    assert record["subject"]["id_number"] not in mine.text
    assert subject["name"] == "张*"
    assert theirs.status_code == 404, (other.name, source.name, theirs.text)
