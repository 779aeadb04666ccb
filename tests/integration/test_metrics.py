"""Every service serves the contract's metric names (contract §6), with no personal data in any label."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from services.cli import admin
from shared.settings import CommonSettings
from tests.conftest import AppClient, SourceCredentials, new_member
from tests.factories import mobile, warning_record


def _families(text: str) -> dict[str, list[dict[str, str]]]:
    return {f.name: [s.labels for s in f.samples] for f in text_string_to_metric_families(text)}


async def test_intake_exports_the_contract_metrics_without_personal_data(
    intake: AppClient, source: SourceCredentials
) -> None:
    record = warning_record()
    assert (await intake.post("/v1/warnings", json=record, headers=source.headers)).status_code == 202
    assert (await intake.post("/v1/warnings", json=record, headers=source.headers)).status_code == 202
    bad = warning_record(risk_level="apocalyptic", fraud_type="'; DROP TABLE --")
    assert (await intake.post("/v1/warnings", json=bad, headers=source.headers)).status_code == 422

    response = await intake.get("/metrics")
    assert response.status_code == 200
    families = _families(response.text)
    for name in ("quanzu_warnings_received", "quanzu_intake_request_seconds", "quanzu_outbox_pending"):
        assert name in families, name
    received = {
        (s["result"], s["fraud_type"], s["risk_level"])
        for s in families["quanzu_warnings_received"]
        if s.get("source") == source.name and "result" in s
    }
    assert received == {
        ("accepted", "investment", "high"),
        ("duplicate", "investment", "high"),
        ("rejected", "invalid", "invalid"),
    }
    for phone_or_id in (record["subject"]["phone"], record["subject"]["id_number"], "张三"):
        assert phone_or_id not in response.text


async def test_every_service_serves_health_readiness_and_metrics(
    intake: AppClient, dispatch: AppClient, feedback: AppClient
) -> None:
    for client in (intake, dispatch, feedback):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        assert "quanzu_outbox_pending" in (await client.get("/metrics")).text


async def test_feedback_exports_its_metrics_without_personal_data(
    feedback: AppClient, dispatch: AppClient, common_settings: CommonSettings
) -> None:
    key = await admin.feed_add(common_settings, f"metrics-feed-{mobile()}")
    phone = mobile()
    report = {"external_id": f"m-{phone}", "reported_at": "2026-01-01T00:00:00Z", "subject": {"phone": phone}}
    assert (await feedback.post("/v1/fraud-reports", json=report, headers={"X-API-Key": key})).status_code == 201
    assert (await feedback.post("/v1/fraud-reports", json=report, headers={"X-API-Key": key})).status_code == 200
    chief = await new_member(common_settings, dispatch, "admin")
    assert (await feedback.get("/v1/stats/rates", headers=chief.headers)).status_code == 200

    response = await feedback.get("/metrics")
    families = _families(response.text)
    reports = {s["result"] for s in families["quanzu_fraud_reports"] if "result" in s}
    assert {"accepted", "duplicate"} <= reports
    assert any(s.get("endpoint") == "rates" for s in families["quanzu_rates_query_seconds"])
    for name in ("quanzu_outcomes_recorded", "quanzu_post_warning_matches", "quanzu_outbox_pending"):
        assert name in families, name
    assert phone not in response.text
