"""Every way a client can get a request wrong gets a precise problem+json, and nothing is stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.cli import admin
from shared.settings import CommonSettings
from tests.conftest import AppClient, SourceCredentials, new_source
from tests.factories import warning_record

PROBLEM = "application/problem+json"


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"].startswith("https://")
    return body


async def test_malformed_json_is_400(intake: AppClient, source: SourceCredentials) -> None:
    response = await intake.post(
        "/v1/warnings", content=b'{"external_id": ', headers={**source.headers, "content-type": "application/json"}
    )
    _problem(response, 400)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer qz_wrong"}, {"X-API-Key": "nope"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
async def test_missing_or_unknown_key_is_401(intake: AppClient, headers: dict[str, str]) -> None:
    response = await intake.post("/v1/warnings", json=warning_record(), headers=headers)
    _problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_x_api_key_header_is_accepted(intake: AppClient, source: SourceCredentials) -> None:
    response = await intake.post("/v1/warnings", json=warning_record(), headers={"X-API-Key": source.key})
    assert response.status_code == 202


async def test_a_revoked_source_is_refused(intake: AppClient, common_settings: CommonSettings) -> None:
    # A fresh source, revoked before its key was ever used (and so before any cache could hold it).
    doomed = await new_source(common_settings)
    await admin.source_revoke(common_settings, doomed.name)
    _problem(await intake.post("/v1/warnings", json=warning_record(), headers=doomed.headers), 401)


async def test_body_over_one_mebibyte_is_413(intake: AppClient, source: SourceCredentials) -> None:
    record = warning_record(evidence={"notes": "x" * (1024 * 1024)})
    _problem(await intake.post("/v1/warnings", json=record, headers=source.headers), 413)


async def test_batch_over_one_thousand_records_is_413(intake: AppClient, source: SourceCredentials) -> None:
    batch = {"warnings": [warning_record() for _ in range(1001)]}
    _problem(await intake.post("/v1/warnings/batch", json=batch, headers=source.headers), 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_a_body_not_declared_json_is_415(intake: AppClient, source: SourceCredentials, content_type: str) -> None:
    headers = {**source.headers, "content-type": content_type}
    response = await intake.post("/v1/warnings", content=orjson.dumps(warning_record()), headers=headers)
    _problem(response, 415)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": {"phone": "13800138000", "id_number": "110101199003078514"}}, "subject.id_number"),
        ({"subject": {"phone": "12345"}}, "subject.phone"),
        ({"subject": {"name": "张三"}}, "subject"),
        ({"risk_level": "extreme"}, "risk_level"),
        ({"fraud_type": "lottery"}, "fraud_type"),
        ({"issued_at": "2026-11-21T08:15:00"}, "issued_at"),
        ({"issued_at": "2999-01-01T00:00:00+08:00"}, "issued_at"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": "x" * 129}, "external_id"),
        ({"amount_at_risk": -1}, "amount_at_risk"),
        ({"in_progress": "perhaps"}, "in_progress"),
        ({"source": "someone-else"}, "source"),
    ],
)
async def test_an_invalid_record_is_422_naming_the_field(
    intake: AppClient, source: SourceCredentials, change: dict[str, Any], field: str
) -> None:
    record = warning_record(**change)
    body = _problem(await intake.post("/v1/warnings", json=record, headers=source.headers), 422)
    assert field in [e["field"] for e in body["errors"]], body
    if field != "external_id":
        # Nothing was stored: the same external_id, corrected, is accepted as new rather than a duplicate.
        fixed = warning_record(external_id=record["external_id"])
        response = await intake.post("/v1/warnings", json=fixed, headers=source.headers)
        assert response.status_code == 202
        assert response.json()["duplicate"] is False


async def test_a_missing_external_id_is_422(intake: AppClient, source: SourceCredentials) -> None:
    record = warning_record()
    del record["external_id"]
    body = _problem(await intake.post("/v1/warnings", json=record, headers=source.headers), 422)
    assert body["errors"] == [{"field": "external_id", "message": "Field required"}]


async def test_personal_data_is_not_echoed_in_errors(intake: AppClient, source: SourceCredentials) -> None:
    record = warning_record(subject={"phone": "13800138000", "id_number": "110101199003078514"})
    response = await intake.post("/v1/warnings", json=record, headers=source.headers)
    assert response.status_code == 422
    assert "110101199003078514" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"null",
        b"42",
        b'"text"',
        b"{}",
        b'{"subject": []}',
        b'{"subject": {"phone": 13800138000}}',
        b'{"external_id": {"a": 1}}',
        b'{"issued_at": 1e309}',
        b'{"external_id": "\\ud800"}',
    ],
)
async def test_no_shape_of_body_gives_a_500(intake: AppClient, source: SourceCredentials, body: bytes) -> None:
    headers = {**source.headers, "content-type": "application/json"}
    for path in ("/v1/warnings", "/v1/warnings/batch"):
        response = await intake.post(path, content=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, body, response.text)
        assert response.headers["content-type"] == PROBLEM


async def test_rate_limit_answers_429_with_retry_after(intake: AppClient, common_settings: CommonSettings) -> None:
    slow = await new_source(common_settings, rate_per_s=1)
    # The bucket holds one full batch; spending it leaves nothing for the next record.
    batch = await intake.post(
        "/v1/warnings/batch", json={"warnings": [warning_record() for _ in range(1000)]}, headers=slow.headers
    )
    assert batch.status_code == 200
    body = _problem(await intake.post("/v1/warnings", json=warning_record(), headers=slow.headers), 429)
    assert slow.name in body["detail"]
    assert (
        int((await intake.post("/v1/warnings", json=warning_record(), headers=slow.headers)).headers["retry-after"])
        >= 1
    )


async def test_unknown_warning_id_is_404_and_a_malformed_one_422(intake: AppClient, source: SourceCredentials) -> None:
    _problem(await intake.get("/v1/warnings/00000000-0000-0000-0000-000000000000", headers=source.headers), 404)
    _problem(await intake.get("/v1/warnings/not-a-uuid", headers=source.headers), 422)
