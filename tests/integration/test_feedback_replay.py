"""Replay: feedback's read model (cases, tasks, warnings, their matches) is dropped and rebuilt from the topics,
and the rates come out identical. What `quanzu feedback rebuild` does, on the real broker and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.cli import admin
from services.feedback.cases import service as read_model
from services.feedback.settings import FeedbackSettings
from shared.db import make_engine, make_session_factory
from shared.devinfra import wait_for
from shared.settings import CommonSettings
from tests.conftest import AppClient, SourceCredentials, new_member
from tests.factories import warning_record
from tests.integration.test_outcomes import SLOW, open_tasks, record

AREA, STATION = "370202-097", "重放派出所"
AREA_CSV = f"area_code,area_name,station,street,district\n{AREA},重放警务区,{STATION},重放街道,市南区\n".encode()
CALLS = ("connected", "connected", "no_answer", "busy")


async def test_the_read_model_rebuilt_from_the_topics_gives_identical_rates(
    intake: AppClient,
    dispatch: AppClient,
    feedback: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
    database_url: str,
) -> None:
    await admin.areas_import(common_settings, AREA_CSV)
    await admin.policy_set(common_settings, AREA, SLOW)  # no deadline falls due while the test compares
    operator = await new_member(common_settings, dispatch, "operator", station=STATION)
    chief = await new_member(common_settings, dispatch, "admin")
    feed_key = await admin.feed_add(common_settings, f"replay-feed-{datetime.now(UTC).timestamp()}")
    phones = []
    calls: dict[str, str] = {}  # case id -> its call task
    for result in CALLS:
        warning = warning_record(area_code=AREA, risk_level="high")
        posted = await intake.post("/v1/warnings", json=warning, headers=source.headers)
        assert posted.status_code == 202, posted.text
        phones.append(warning["subject"]["phone"])
        [call] = await open_tasks(dispatch, operator, posted.json()["id"], "call", 1)
        body: dict[str, Any] = {"task_id": call["id"], "kind": "call", "call_result": result}
        if result == "connected":
            body["dissuasion_result"] = "dissuaded"
        recorded = await record(feedback, operator, body)
        assert recorded.status_code == 201, recorded.text
        calls[recorded.json()["case_id"]] = call["id"]
    report = {"external_id": "replay-1", "reported_at": datetime.now(UTC).isoformat(), "subject": {"phone": phones[0]}}
    assert (await feedback.post("/v1/fraud-reports", json=report, headers={"X-API-Key": feed_key})).status_code == 201

    now = datetime.now(UTC)
    window = {"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()}

    async def ours(group_by: str) -> list[dict[str, Any]]:
        response = await feedback.get("/v1/stats/rates", params={**window, "group_by": group_by}, headers=chief.headers)
        assert response.status_code == 200, response.text
        return [g for g in response.json()["groups"] if g["key"]["area"] == AREA]

    async def decided() -> int | None:
        """The cases dispatch has closed, once it has acted on every outcome (its events then are in its outbox)."""
        closed = 0
        for case_id, call_id in calls.items():
            case = (await dispatch.get(f"/v1/cases/{case_id}", headers=chief.headers)).json()
            if next(t for t in case["tasks"] if t["id"] == call_id)["status"] != "done":
                return None
            closed += case["state"] == "closed"
        return closed

    closed = await wait_for(decided, timeout=30, interval=0.2, message="dispatch to act on every outcome")

    async def settled() -> list[dict[str, Any]] | None:
        groups = await ours("area,source,fraud_type,day")
        counts = groups[0]["counts"] if groups else None
        done = counts is not None and counts["call_attempt_connected_rate"]["denominator"] == len(CALLS)
        texted = done and groups[0]["time_to_first_contact"]["sms"]["count"] == len(CALLS)  # every sms.sent is in
        closures = texted and groups[0]["counts"]["overall_dissuasion_rate"]["denominator"] == closed
        return groups if closures and groups[0]["post_warning_cases"] == 1 else None

    before = await wait_for(settled, timeout=30, interval=0.2, message="feedback to count the calls and the report")
    assert before[0]["counts"]["call_connected_rate"] == {"numerator": 2, "denominator": 4}
    assert before[0]["rates"]["call_attempt_connected_rate"] == 0.5

    settings = feedback.app.state.runtime.settings  # the same subject-key secret, or no report would match
    assert isinstance(settings, FeedbackSettings)
    engine = make_engine(database_url, pool_size=2, application_name="replay-test")
    try:
        factory = make_session_factory(engine)
        await read_model.clear(factory, settings)
        assert await ours("area") == []  # the read model is really gone
        replayed = await read_model.replay(factory, settings)
    finally:
        await engine.dispose()
    assert all(replayed.applied[topic] > 0 for topic in ("registry.events", "dispatch.events", "warnings.received"))
    after = await ours("area,source,fraud_type,day")
    changed = {
        f"{part}.{name}": (b[part][name], a[part][name])
        for b, a in zip(before, after, strict=True)
        for part in ("rates", "counts", "time_to_first_contact")
        for name in b[part]
        if b[part][name] != a[part][name]
    }
    assert not changed, changed
    assert after == before
