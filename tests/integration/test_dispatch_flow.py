"""The escalation path end to end, through the real HTTP APIs and topics: a warning posted to intake becomes a
case in dispatch; outcomes arrive on feedback.outcomes as feedback will publish them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.cli import admin
from shared.devinfra import Broker, wait_for
from shared.events import Envelope, OutcomeRecordedV1, Topic, dead_letter_topic
from shared.kafka import make_producer
from shared.settings import CommonSettings
from tests.conftest import AppClient, Member, SourceCredentials, new_member
from tests.factories import mobile, warning_record
from tests.kafka_helpers import read_envelopes

SLOW_AREA = "370202-031"  # deadlines far away: the flow is driven by outcomes only
FAST_AREA = "370202-041"  # deadlines of seconds: the flow is driven by the clock
SLOW_STATION, FAST_STATION = "香港路派出所", "湛山派出所"


@pytest.fixture(scope="module")
async def producer(broker: Broker) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(broker.bootstrap, client_id="test-feedback")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="module")
async def policies(common_settings: CommonSettings, demo_teams: dict[str, str]) -> None:
    slow = (
        b'{"call_first_within_s": {"medium": 86400, "high": 86400, "critical": 86400}, "ack_within_s": 86400,'
        b' "visit_arrive_within_s": 86400, "follow_up_within_s": 86400, "sms_within_s": 86400}'
    )
    fast = b'{"ack_within_s": 1, "visit_arrive_within_s": 4, "call_first_within_s": {"high": 3600, "critical": 3600,' \
           b' "medium": 3600}, "sms_within_s": 3600}'  # fmt: skip
    await admin.policy_set(common_settings, SLOW_AREA, slow)
    await admin.policy_set(common_settings, FAST_AREA, fast)


async def outcome(producer: AIOKafkaProducer, task_id: str, kind: str, **results: str) -> None:
    data = OutcomeRecordedV1(
        outcome_id=uuid.uuid4(), task_id=uuid.UUID(task_id), kind=kind, recorded_at=datetime.now(UTC), **results,
    )  # fmt: skip
    envelope = Envelope.new(data.TYPE, "quanzu/feedback", data, subject=task_id)
    await producer.send_and_wait(Topic.FEEDBACK_OUTCOMES, envelope.to_bytes(), key=task_id.encode())


async def tasks_of(client: AppClient, member: Member, **query: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/tasks", params={"status": "all", **query}, headers=member.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def eventually(
    client: AppClient, member: Member, predicate: Any, message: str, **query: str
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        items = await tasks_of(client, member, **query)
        return items if predicate(items) else None

    found: list[dict[str, Any]] = await wait_for(check, timeout=30, interval=0.1, message=message)
    return found


async def test_no_answer_three_times_escalates_to_a_visit_then_a_follow_up_closes_the_case(
    intake: AppClient,
    dispatch: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
    demo_teams: dict[str, str],
    admin_member: Member,
    policies: None,
    producer: AIOKafkaProducer,
    broker: Broker,
) -> None:
    operator = await new_member(common_settings, dispatch, "operator", station=SLOW_STATION)
    officer = await new_member(common_settings, dispatch, "officer", team=demo_teams[SLOW_AREA])
    grid = await new_member(common_settings, dispatch, "grid_worker", team=demo_teams[SLOW_AREA])
    phone = mobile()
    posted = await intake.post(
        "/v1/warnings",
        json=warning_record(area_code=SLOW_AREA, risk_level="high", subject={"phone": phone, "residency": "unknown"}),
        headers=source.headers,
    )
    warning_id = posted.json()["id"]

    # the station's 96110 operator sees the first call attempt, phone masked in the list
    [call] = await eventually(dispatch, operator, lambda items: len(items) == 1, "the call task", warning_id=warning_id)
    assert (call["tier"], call["attempt"], call["status"], call["risk_level"]) == ("call", 1, "open", "high")
    assert call["subject"]["phone"] == phone[:3] + "****" + phone[-4:]
    assert call["warning_ids"] == [warning_id]
    detail = await dispatch.get(f"/v1/tasks/{call['id']}", headers=operator.headers)
    assert detail.json()["subject"]["phone"] == phone  # the one who must call sees it, access-logged
    case_id = call["case_id"]

    for attempt in (1, 2, 3):
        [current] = await eventually(
            dispatch, operator, lambda items, a=attempt: any(t["attempt"] == a for t in items),
            f"call attempt {attempt}", case_id=case_id, status="open",
        )  # fmt: skip
        await outcome(producer, current["id"], "call", call_result="no_answer")

    # after the third unanswered attempt: a visit for the area's team
    [visit] = await eventually(dispatch, officer, lambda items: len(items) == 1, "the visit", case_id=case_id)
    assert visit["tier"] == "visit"
    assert visit["team_id"] is not None
    key = {"Idempotency-Key": f"accept-{uuid.uuid4()}"}
    first = await dispatch.post(f"/v1/tasks/{visit['id']}/accept", headers={**officer.headers, **key})
    retried = await dispatch.post(f"/v1/tasks/{visit['id']}/accept", headers={**officer.headers, **key})
    assert first.status_code == 200 and retried.json() == first.json()
    assert first.json()["status"] == "acked"
    arrived = await dispatch.post(
        f"/v1/tasks/{visit['id']}/arrive", json={"lat": 36.06, "lon": 120.38}, headers=officer.headers
    )
    assert arrived.status_code == 200, arrived.text
    await outcome(producer, visit["id"], "visit", dissuasion_result="dissuaded")

    # the grid worker's follow-up, phone masked even on the task itself
    [follow] = await eventually(dispatch, grid, lambda items: len(items) == 1, "the follow-up", case_id=case_id)
    assert follow["tier"] == "follow_up"
    assert phone not in (await dispatch.get(f"/v1/tasks/{follow['id']}", headers=grid.headers)).text
    await outcome(producer, follow["id"], "follow_up", dissuasion_result="dissuaded")

    async def closed() -> dict[str, Any] | None:
        case = (await dispatch.get(f"/v1/cases/{case_id}", headers=admin_member.headers)).json()
        return case if case["state"] == "closed" else None

    case = await wait_for(closed, timeout=30, interval=0.1, message="the case to close")
    assert case["closure"] == "dissuaded"
    states = [t["to_state"] for t in case["transitions"]]
    assert states == ["opened", "calling", "visiting", "follow_up", "closed"]
    assert [t["tier"] for t in case["tasks"]] == ["sms", "call", "call", "call", "visit", "follow_up"]

    events = await read_envelopes(
        broker.bootstrap, Topic.DISPATCH_EVENTS,
        lambda es: any(e.type == "case.closed" and e.data["case_id"] == case_id for e in es),
    )  # fmt: skip
    mine = [e for e in events if e.subject == case_id]
    assert [e.type for e in mine if e.type in ("case.opened", "task.escalated", "case.closed")] == [
        "case.opened", "task.escalated", "case.closed",
    ]  # fmt: skip
    assert not [e for e in mine if phone in e.to_bytes().decode()]


async def test_an_unacknowledged_visit_is_renotified_then_goes_to_the_backup_team_and_breaches(
    intake: AppClient,
    dispatch: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
    demo_teams: dict[str, str],
    admin_member: Member,
    policies: None,
) -> None:
    backup = f"backup-{uuid.uuid4().hex[:6]}"
    await admin.team_add(common_settings, backup, "370202-042", backup=True)  # 湛山派出所's backup team
    posted = await intake.post(
        "/v1/warnings", json=warning_record(area_code=FAST_AREA, risk_level="critical"), headers=source.headers
    )
    warning_id = posted.json()["id"]
    supervisor = await new_member(common_settings, dispatch, "supervisor", station=FAST_STATION)

    async def notified(kinds: set[str]) -> list[dict[str, Any]] | None:
        tasks = await tasks_of(dispatch, admin_member, warning_id=warning_id, tier="visit")
        if not tasks:
            return None
        response = await dispatch.get(
            "/v1/dev/notifications", params={"case_id": tasks[0]["case_id"]}, headers=admin_member.headers
        )
        found: list[dict[str, Any]] = response.json()
        return found if kinds <= {n["kind"] for n in found} else None

    notes = await wait_for(
        lambda: notified({"task.new", "task.renotify", "supervisor.alert"}), timeout=30, interval=0.2,
        message="re-notification and the supervisor alert",
    )  # fmt: skip
    assert any(n["recipient_kind"] == "supervisors" and n["recipient"] == FAST_STATION for n in notes)
    [visit] = await tasks_of(dispatch, admin_member, warning_id=warning_id, tier="visit")
    teams = await dispatch.get("/v1/admin/teams", headers=admin_member.headers)
    backup_id = next(t["id"] for t in teams.json() if t["name"] == backup)
    await wait_for(
        lambda: _team_is(dispatch, admin_member, visit["id"], backup_id), timeout=30, interval=0.2,
        message="the visit to pass to the backup team",
    )  # fmt: skip
    # the supervisor of the station sees the alert and the task
    seen = await dispatch.get("/v1/dev/notifications", params={"case_id": visit["case_id"]}, headers=supervisor.headers)
    assert any(n["kind"] == "supervisor.alert" for n in seen.json())
    metrics = (await dispatch.get("/metrics")).text
    assert f'quanzu_sla_breaches_total{{area="{FAST_AREA}",tier="visit"}}' in metrics


async def _team_is(client: AppClient, admin_member: Member, task_id: str, team_id: str) -> bool:
    task = (await client.get(f"/v1/tasks/{task_id}", headers=admin_member.headers)).json()
    return bool(task["team_id"] == team_id)


async def test_another_areas_member_cannot_see_or_act_on_a_task(
    intake: AppClient,
    dispatch: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
    demo_teams: dict[str, str],
    policies: None,
) -> None:
    operator = await new_member(common_settings, dispatch, "operator", station=SLOW_STATION)
    stranger = await new_member(common_settings, dispatch, "operator", station=FAST_STATION)
    posted = await intake.post("/v1/warnings", json=warning_record(area_code=SLOW_AREA), headers=source.headers)
    [call] = await eventually(
        dispatch, operator, lambda items: len(items) == 1, "the call", warning_id=posted.json()["id"]
    )
    assert await tasks_of(dispatch, stranger, warning_id=posted.json()["id"]) == []
    assert (await dispatch.get(f"/v1/tasks/{call['id']}", headers=stranger.headers)).status_code == 404
    assert (await dispatch.post(f"/v1/tasks/{call['id']}/accept", headers=stranger.headers)).status_code == 404


async def test_an_outcome_for_an_unknown_task_goes_to_the_dead_letter_topic_and_the_next_is_handled(
    intake: AppClient,
    dispatch: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
    policies: None,
    producer: AIOKafkaProducer,
    broker: Broker,
) -> None:
    operator = await new_member(common_settings, dispatch, "operator", station=SLOW_STATION)
    posted = await intake.post("/v1/warnings", json=warning_record(area_code=SLOW_AREA), headers=source.headers)
    [call] = await eventually(dispatch, operator, lambda i: len(i) == 1, "the call", warning_id=posted.json()["id"])
    unknown = str(uuid.uuid4())
    await outcome(producer, unknown, "call", call_result="no_answer")
    await outcome(producer, call["id"], "call", call_result="connected", dissuasion_result="dissuaded")
    await eventually(
        dispatch, operator, lambda items: items and items[0]["status"] == "done", "the good outcome handled",
        warning_id=posted.json()["id"],
    )  # fmt: skip
    dead = await read_envelopes(
        broker.bootstrap, dead_letter_topic(Topic.FEEDBACK_OUTCOMES),
        lambda es: any(e.data.get("task_id") == unknown for e in es),
    )  # fmt: skip
    assert any(e.data["task_id"] == unknown for e in dead)


async def test_a_further_warning_joins_the_open_case_and_raises_its_risk_without_repeating_tasks(
    intake: AppClient,
    dispatch: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
    demo_teams: dict[str, str],
    admin_member: Member,
    policies: None,
) -> None:
    subject = {"phone": mobile(), "residency": "unknown"}
    first = await intake.post(
        "/v1/warnings", json=warning_record(area_code=SLOW_AREA, risk_level="medium", subject=subject),
        headers=source.headers,
    )  # fmt: skip
    opened = await eventually(
        dispatch, admin_member, lambda i: len(i) == 2, "sms and call", warning_id=first.json()["id"]
    )
    case_id = opened[0]["case_id"]
    second = await intake.post(
        "/v1/warnings", json=warning_record(area_code=SLOW_AREA, risk_level="critical", subject=subject),
        headers=source.headers,
    )  # fmt: skip

    async def joined() -> dict[str, Any] | None:
        case = (await dispatch.get(f"/v1/cases/{case_id}", headers=admin_member.headers)).json()
        return case if len(case["warnings"]) == 2 and any(t["tier"] == "visit" for t in case["tasks"]) else None

    case = await wait_for(joined, timeout=30, interval=0.1, message="the second warning to join")
    assert case["risk_level"] == "critical"
    assert {w["warning_id"] for w in case["warnings"]} == {first.json()["id"], second.json()["id"]}
    assert sorted(t["tier"] for t in case["tasks"]) == ["call", "sms", "visit"]


async def test_an_unassigned_case_waits_for_a_supervisor_then_its_calls_start(
    intake: AppClient,
    dispatch: AppClient,
    source: SourceCredentials,
    admin_member: Member,
    policies: None,
) -> None:
    posted = await intake.post("/v1/warnings", json=warning_record(area_code=None), headers=source.headers)
    [sms] = await eventually(dispatch, admin_member, lambda i: len(i) == 1, "the sms", warning_id=posted.json()["id"])
    assert sms["tier"] == "sms" and sms["area_code"] is None
    assigned = await dispatch.post(
        f"/v1/cases/{sms['case_id']}/assign", json={"area_code": SLOW_AREA}, headers=admin_member.headers
    )
    assert assigned.status_code == 200, assigned.text
    assert [t["tier"] for t in assigned.json()["tasks"]] == ["sms", "call"]
    assert assigned.json()["area_code"] == SLOW_AREA
    again = await dispatch.post(
        f"/v1/cases/{sms['case_id']}/assign", json={"area_code": SLOW_AREA}, headers=admin_member.headers
    )
    assert again.status_code == 409


async def test_retention_erases_a_closed_cases_personal_fields_and_keeps_what_the_rates_need(
    intake: AppClient,
    dispatch: AppClient,
    source: SourceCredentials,
    common_settings: CommonSettings,
    admin_member: Member,
    policies: None,
    producer: AIOKafkaProducer,
    database_url: str,
) -> None:
    from services.dispatch.cases.repository import erase_subjects
    from shared.db import make_engine, make_session_factory, unit_of_work
    from shared.scope import app_role, system_settings

    phone = mobile()
    posted = await intake.post(
        "/v1/warnings", json=warning_record(area_code=SLOW_AREA, subject={"phone": phone, "name": "赵六"}),
        headers=source.headers,
    )  # fmt: skip
    [call] = await eventually(
        dispatch, admin_member, lambda i: len(i) == 1, "the call", warning_id=posted.json()["id"], tier="call"
    )
    await outcome(producer, call["id"], "call", call_result="connected", dissuasion_result="dissuaded")

    async def closed() -> dict[str, Any] | None:
        case = (await dispatch.get(f"/v1/cases/{call['case_id']}", headers=admin_member.headers)).json()
        return case if case["state"] == "closed" else None

    await wait_for(closed, timeout=30, interval=0.1, message="the case to close")
    engine = make_engine(database_url, pool_size=1, role=app_role("dispatch"))
    try:
        async with unit_of_work(make_session_factory(engine), system_settings()) as session:
            conn = await session.connection()
            await conn.exec_driver_sql(
                "UPDATE dispatch.cases SET closed_at = closed_at - interval '181 days' WHERE id = $1",
                (uuid.UUID(call["case_id"]),),
            )
            assert await erase_subjects(session, 180) >= 1
    finally:
        await engine.dispose()
    case = (await dispatch.get(f"/v1/cases/{call['case_id']}", headers=admin_member.headers)).json()
    subject = case["subject"]
    assert subject["erased"] is True and subject["residency"] == "unknown"
    assert all(subject.get(f) is None for f in ("phone", "name", "id_number", "address"))
    assert phone not in json.dumps(case)
    assert (case["closure"], case["risk_level"], case["area_code"]) == ("dissuaded", "high", SLOW_AREA)
