"""Outcomes over HTTP: a member records what happened at feedback; dispatch acts on it. The whole loop, with
feedback learning the tasks from dispatch.events and dispatch learning the outcomes from feedback.outcomes."""

from __future__ import annotations

import uuid
from typing import Any

from services.cli import admin
from shared.devinfra import wait_for
from shared.settings import CommonSettings
from tests.conftest import AppClient, Member, SourceCredentials, new_member
from tests.factories import warning_record

AREA, STATION = "370202-032", "香港路派出所"
SLOW = b'{"call_first_within_s": {"medium": 86400, "high": 86400, "critical": 86400}, "ack_within_s": 86400,' \
       b' "visit_arrive_within_s": 86400, "follow_up_within_s": 86400, "sms_within_s": 86400}'  # fmt: skip


async def open_tasks(
    dispatch: AppClient, member: Member, warning_id: str, tier: str, n: int, attempt: int = 1
) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        query = {"warning_id": warning_id, "tier": tier, "status": "open"}
        response = await dispatch.get("/v1/tasks", params=query, headers=member.headers)
        items: list[dict[str, Any]] = response.json()["items"]
        return items if len(items) == n and all(i["attempt"] == attempt for i in items) else None

    # Generous: the session's dispatch may still be working through earlier tests' thousands of warnings.
    result: list[dict[str, Any]] = await wait_for(found, timeout=120, interval=0.1, message=f"{n} open {tier} task(s)")
    return result


async def record(feedback: AppClient, member: Member, body: dict[str, Any], **headers: str) -> Any:
    """POST /v1/outcomes, waiting until feedback has learnt the task from dispatch.events (404 until then)."""

    async def post() -> Any:
        response = await feedback.post("/v1/outcomes", json=body, headers={**member.headers, **headers})
        return None if response.status_code == 404 else response

    return await wait_for(post, timeout=120, interval=0.1, message="feedback to know the task")


async def test_three_unanswered_calls_recorded_over_http_bring_a_visit(
    intake: AppClient,
    dispatch: AppClient,
    feedback: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
    demo_teams: dict[str, str],
) -> None:
    await admin.policy_set(common_settings, AREA, SLOW)
    operator = await new_member(common_settings, dispatch, "operator", station=STATION)
    officer = await new_member(common_settings, dispatch, "officer", team=demo_teams[AREA])
    posted = await intake.post("/v1/warnings", json=warning_record(area_code=AREA), headers=source.headers)
    warning_id = posted.json()["id"]
    for attempt in (1, 2, 3):
        [call] = await open_tasks(dispatch, operator, warning_id, "call", 1, attempt)
        key = f"retry-{uuid.uuid4()}"
        body = {"task_id": call["id"], "kind": "call", "call_result": "no_answer"}
        first = await record(feedback, operator, body, **{"Idempotency-Key": key})
        assert first.status_code == 201, first.text
        retried = await feedback.post("/v1/outcomes", json=body, headers={**operator.headers, "Idempotency-Key": key})
        assert (retried.status_code, retried.json()) == (201, first.json())
        again = await feedback.post("/v1/outcomes", json=body, headers=operator.headers)
        assert again.status_code == 409  # one outcome per task
    [visit] = await open_tasks(dispatch, officer, warning_id, "visit", 1)
    assert visit["tier"] == "visit"


async def test_an_outcome_is_validated_against_its_task_and_the_members_scope(
    intake: AppClient,
    dispatch: AppClient,
    feedback: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
) -> None:
    await admin.policy_set(common_settings, AREA, SLOW)
    operator = await new_member(common_settings, dispatch, "operator", station=STATION)
    stranger = await new_member(common_settings, dispatch, "operator", station="中山路派出所")
    posted = await intake.post("/v1/warnings", json=warning_record(area_code=AREA), headers=source.headers)
    [call] = await open_tasks(dispatch, operator, posted.json()["id"], "call", 1)

    wrong_kind = await record(
        feedback, operator, {"task_id": call["id"], "kind": "visit", "dissuasion_result": "dissuaded"}
    )
    assert (wrong_kind.status_code, wrong_kind.json()["errors"][0]["field"]) == (422, "kind")
    missing = await feedback.post(
        "/v1/outcomes", json={"task_id": call["id"], "kind": "call"}, headers=operator.headers
    )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "call_result"
    not_connected_but_dissuaded = await feedback.post(
        "/v1/outcomes",
        json={"task_id": call["id"], "kind": "call", "call_result": "busy", "dissuasion_result": "dissuaded"},
        headers=operator.headers,
    )
    assert not_connected_but_dissuaded.json()["errors"][0]["field"] == "dissuasion_result"
    body = {"task_id": call["id"], "kind": "call", "call_result": "connected", "dissuasion_result": "dissuaded"}
    assert (await feedback.post("/v1/outcomes", json=body, headers=stranger.headers)).status_code == 404
    assert (await feedback.post("/v1/outcomes", json=body)).status_code == 401
    assert (await feedback.post("/v1/outcomes", json=body, headers=operator.headers)).status_code == 201
