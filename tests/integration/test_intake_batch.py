"""Batches: per-item results in request order, one transaction, every accepted record on the topic."""

from __future__ import annotations

from shared.devinfra import Broker
from shared.events import Topic
from tests.conftest import AppClient, SourceCredentials
from tests.factories import warning_record
from tests.kafka_helpers import read_envelopes, with_warning_ids


async def test_a_batch_of_one_thousand_is_accepted_and_published(
    intake: AppClient, source: SourceCredentials, broker: Broker
) -> None:
    records = [warning_record() for _ in range(1000)]
    response = await intake.post("/v1/warnings/batch", json={"warnings": records}, headers=source.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (1000, 0, 0)
    assert [r["index"] for r in body["results"]] == list(range(1000))
    assert all(r["code"] == 202 and r["status"] == "accepted" and not r["duplicate"] for r in body["results"])
    ids = {r["id"] for r in body["results"]}
    assert len(ids) == 1000
    envelopes = await read_envelopes(broker.bootstrap, Topic.WARNINGS_RECEIVED, with_warning_ids(ids), timeout=60)
    published = [e for e in envelopes if e.data["warning_id"] in ids]
    assert {e.data["external_id"] for e in published} == {r["external_id"] for r in records}


async def test_mixed_batch_answers_each_item_in_order(intake: AppClient, source: SourceCredentials) -> None:
    stored = warning_record()
    first = await intake.post("/v1/warnings", json=stored, headers=source.headers)
    fresh = warning_record()
    items = [
        fresh,
        {**warning_record(), "risk_level": "extreme"},
        stored,
        {**stored, "risk_level": "low"},
        "not an object",
        fresh,
        {**fresh, "in_progress": True},
    ]
    response = await intake.post("/v1/warnings/batch", json={"warnings": items}, headers=source.headers)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["code"] for r in results] == [202, 422, 202, 409, 422, 202, 409]
    assert [r["status"] for r in results][:4] == ["accepted", "rejected", "accepted", "conflict"]
    assert results[1]["errors"] == [{"field": "warnings[1].risk_level", "message": results[1]["errors"][0]["message"]}]
    assert results[2]["duplicate"] is True and results[2]["id"] == first.json()["id"]
    assert results[5]["duplicate"] is True and results[5]["id"] == results[0]["id"]
    assert results[4]["errors"][0]["field"] == "warnings[4]"
    assert response.json()["accepted"] == 1
    assert response.json()["duplicate"] == 2
    assert response.json()["rejected"] == 4


async def test_batch_body_must_hold_a_warnings_list(intake: AppClient, source: SourceCredentials) -> None:
    response = await intake.post("/v1/warnings/batch", json={"records": []}, headers=source.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "warnings"
