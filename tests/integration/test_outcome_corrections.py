"""Correcting an outcome (contract §4: "a second outcome for the same task is 409 unless it is an explicit
correction"), the real way: a warning posted to intake, dispatch making the tasks, outcomes recorded at feedback
over HTTP, and dispatch learning the corrections from feedback.outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.cli import admin
from shared.devinfra import wait_for
from shared.settings import CommonSettings
from tests.conftest import AppClient, Member, SourceCredentials, new_member
from tests.factories import warning_record
from tests.integration.test_outcomes import SLOW, open_tasks, record

AREA, STATION = "370202-095", "更正测试派出所"
AREA_CSV = f"area_code,area_name,station,street,district\n{AREA},更正警务区,{STATION},更正街道,市南区\n".encode()
OTHER_AREA = "370202-021"


@dataclass(frozen=True)
class People:
    officer: Member  # the area's field team: acts on its visits
    supervisor: Member  # the area's station
    chief: Member  # a district admin
    operator: Member  # the station's 96110 operator: calls only, never visits
    stranger: Member  # the field team of another area


@pytest.fixture(scope="module")
async def team(common_settings: CommonSettings, intake: AppClient, dispatch: AppClient) -> str:
    await admin.areas_import(common_settings, AREA_CSV)
    await admin.policy_set(common_settings, AREA, SLOW)  # no deadline moves a case on while a test drives it
    name = f"team-corrections-{uuid.uuid4().hex[:8]}"
    await admin.team_add(common_settings, name, AREA, backup=False)
    await wait_for(
        lambda: AREA in intake.app.state.intake.areas.codes, timeout=30, message="intake to learn the test area"
    )
    return name


@pytest.fixture
async def people(common_settings: CommonSettings, dispatch: AppClient, team: str, demo_teams: dict[str, str]) -> People:
    return People(
        officer=await new_member(common_settings, dispatch, "officer", team=team),
        supervisor=await new_member(common_settings, dispatch, "supervisor", station=STATION),
        chief=await new_member(common_settings, dispatch, "admin"),
        operator=await new_member(common_settings, dispatch, "operator", station=STATION),
        stranger=await new_member(common_settings, dispatch, "officer", team=demo_teams[OTHER_AREA]),
    )


async def critical_visit(intake: AppClient, dispatch: AppClient, source: SourceCredentials, officer: Member) -> Any:
    """A critical warning of the test area: dispatch sends the area's team to the door at once."""
    posted = await intake.post(
        "/v1/warnings", json=warning_record(area_code=AREA, risk_level="critical"), headers=source.headers
    )
    assert posted.status_code == 202, posted.text
    assert posted.json()["assigned"] is True, posted.text
    [visit] = await open_tasks(dispatch, officer, posted.json()["id"], "visit", 1)
    return visit


async def history(feedback: AppClient, member: Member, task_id: str) -> list[dict[str, Any]]:
    response = await feedback.get("/v1/outcomes", params={"task_id": task_id}, headers=member.headers)
    assert response.status_code == 200, response.text
    outcomes: list[dict[str, Any]] = response.json()
    return outcomes


async def post(feedback: AppClient, member: Member, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await feedback.post("/v1/outcomes", json=body, headers={**member.headers, **headers})


async def case_when(
    dispatch: AppClient, chief: Member, case_id: str, ready: Callable[[dict[str, Any]], bool], message: str
) -> dict[str, Any]:
    """GET /v1/cases/{id} as an admin, polled until `ready(case)`."""

    async def fetch() -> dict[str, Any] | None:
        response = await dispatch.get(f"/v1/cases/{case_id}", headers=chief.headers)
        assert response.status_code == 200, response.text
        case: dict[str, Any] = response.json()
        return case if ready(case) else None

    found: dict[str, Any] = await wait_for(fetch, timeout=30, interval=0.1, message=message)
    return found


async def test_a_correction_keeps_the_original_and_every_correction_names_the_current_outcome(
    intake: AppClient, dispatch: AppClient, feedback: AppClient, source: SourceCredentials, people: People
) -> None:
    visit = await critical_visit(intake, dispatch, source, people.officer)
    body = {
        "task_id": visit["id"], "kind": "visit", "dissuasion_result": "dissuaded", "loss_prevented": 5000.0,
        "checklist": {"checked_call_log": True, "antifraud_app_installed": True},
    }  # fmt: skip
    first = await record(feedback, people.officer, body)
    assert first.status_code == 201, first.text
    original = first.json()
    assert (original["corrects"], original["correction_reason"], original["superseded_by"]) == (None, None, None)

    # A plain second outcome is refused, and says which outcome a correction must name.
    again = await post(feedback, people.supervisor, {**body, "dissuasion_result": "not_dissuaded"})
    assert again.status_code == 409, again.text
    assert again.json()["outcome_id"] == original["id"]
    # A correction says why; a reason is not a correction without the outcome it corrects.
    correction = {**body, "dissuasion_result": "not_dissuaded", "corrects": original["id"]}
    unexplained = await post(feedback, people.supervisor, correction)
    assert unexplained.status_code == 422, unexplained.text
    assert "correction_reason" in [e["field"] for e in unexplained.json()["errors"]]
    orphan_reason = await post(feedback, people.supervisor, {**body, "correction_reason": "typo"})
    assert orphan_reason.status_code == 422, orphan_reason.text
    assert "correction_reason" in [e["field"] for e in orphan_reason.json()["errors"]]
    assert [o["id"] for o in await history(feedback, people.officer, visit["id"])] == [original["id"]]

    # The supervisor corrects it, on a phone that retries.
    correction["correction_reason"] = "the officer picked the wrong result: the subject refused to listen"
    key = f"correct-{uuid.uuid4()}"
    corrected = await post(feedback, people.supervisor, correction, **{"Idempotency-Key": key})
    assert corrected.status_code == 201, corrected.text
    current = corrected.json()
    assert current["id"] != original["id"]
    assert (current["corrects"], current["correction_reason"]) == (original["id"], correction["correction_reason"])
    assert (current["dissuasion_result"], current["recorded_by"]) == ("not_dissuaded", people.supervisor.username)
    retried = await post(feedback, people.supervisor, correction, **{"Idempotency-Key": key})
    assert (retried.status_code, retried.json()) == (201, current)

    shown = await history(feedback, people.officer, visit["id"])
    assert [o["id"] for o in shown] == [original["id"], current["id"]]  # the original first, and kept
    kept, latest = shown
    assert kept["superseded_by"] == current["id"]
    assert (kept["dissuasion_result"], kept["recorded_by"], kept["corrects"]) == (
        "dissuaded",
        people.officer.username,
        None,
    )
    assert kept["loss_prevented"] == 5000.0 and kept["checklist"]["antifraud_app_installed"] is True
    assert latest == {**current, "superseded_by": None}

    # A further correction names the current outcome: naming the original (no longer current) is refused.
    stale = {**correction, "dissuasion_result": "already_defrauded", "correction_reason": "a second look"}
    stale_answer = await post(feedback, people.officer, stale)
    assert stale_answer.status_code == 409, stale_answer.text
    assert stale_answer.json()["outcome_id"] == current["id"]
    unknown = await post(feedback, people.officer, {**stale, "corrects": str(uuid.uuid4())})
    assert unknown.status_code == 409, unknown.text
    second = await post(feedback, people.officer, {**stale, "corrects": current["id"]})
    assert second.status_code == 201, second.text
    # The retried first correction still gets its first answer, and adds nothing.
    late_retry = await post(feedback, people.supervisor, correction, **{"Idempotency-Key": key})
    assert (late_retry.status_code, late_retry.json()) == (201, current)
    shown = await history(feedback, people.supervisor, visit["id"])
    assert [o["id"] for o in shown] == [original["id"], current["id"], second.json()["id"]]
    assert [o["superseded_by"] for o in shown] == [current["id"], second.json()["id"], None]
    assert [o["recorded_by"] for o in shown] == [
        people.officer.username,
        people.supervisor.username,
        people.officer.username,
    ]

    # Dispatch records each correction on the case's timeline, with the reason.
    def corrected_twice(case: dict[str, Any]) -> bool:
        notes: list[str] = [t["reason"] for t in case["transitions"]]
        return sum(n.startswith("visit outcome corrected: ") for n in notes) == 2

    case = await case_when(dispatch, people.supervisor, visit["case_id"], corrected_twice, "two corrections")
    assert any(correction["correction_reason"] in t["reason"] for t in case["transitions"])
    assert case["state"] != "closed"  # a dissuaded visit leads to a follow-up: the case was not closed by it


async def test_only_members_who_may_see_the_task_read_its_outcomes(
    intake: AppClient, dispatch: AppClient, feedback: AppClient, source: SourceCredentials, people: People
) -> None:
    visit = await critical_visit(intake, dispatch, source, people.officer)
    body = {"task_id": visit["id"], "kind": "visit", "dissuasion_result": "not_met"}
    assert (await record(feedback, people.officer, body)).status_code == 201
    for member in (people.officer, people.supervisor, people.chief):
        assert [o["dissuasion_result"] for o in await history(feedback, member, visit["id"])] == ["not_met"]
    params = {"task_id": visit["id"]}
    for member in (people.stranger, people.operator):
        hidden = await feedback.get("/v1/outcomes", params=params, headers=member.headers)
        absent = await feedback.get("/v1/outcomes", params={"task_id": str(uuid.uuid4())}, headers=member.headers)
        assert hidden.status_code == absent.status_code == 404, hidden.text
        assert hidden.json() == absent.json()  # cannot tell a hidden task from one that does not exist
        corrected = await post(
            feedback, member, {**body, "dissuasion_result": "false_positive", "corrects": str(uuid.uuid4()),
                               "correction_reason": "not mine to correct"},
        )  # fmt: skip
        assert corrected.status_code == 404, corrected.text
    assert (await feedback.get("/v1/outcomes", params=params)).status_code == 401
    assert (await feedback.get("/v1/outcomes", headers=people.officer.headers)).status_code == 422  # task_id needed
    assert len(await history(feedback, people.officer, visit["id"])) == 1


async def test_correcting_the_visit_result_that_closed_a_case_re_closes_it(
    intake: AppClient, dispatch: AppClient, feedback: AppClient, source: SourceCredentials, people: People
) -> None:
    visit = await critical_visit(intake, dispatch, source, people.officer)
    body = {"task_id": visit["id"], "kind": "visit", "dissuasion_result": "false_positive"}
    first = await record(feedback, people.officer, body)
    assert first.status_code == 201, first.text
    closed = await case_when(
        dispatch, people.chief, visit["case_id"], lambda c: c["state"] == "closed", "the false positive to close"
    )
    assert closed["closure"] == "false_positive"

    reason = "the family confirmed a transfer to the 'investment platform' the day before"
    correction = {**body, "dissuasion_result": "already_defrauded", "corrects": first.json()["id"],
                  "correction_reason": reason}  # fmt: skip
    corrected = await post(feedback, people.officer, correction)
    assert corrected.status_code == 201, corrected.text

    reclosed = await case_when(
        dispatch, people.chief, visit["case_id"], lambda c: c["closure"] == "already_defrauded", "the re-closure"
    )
    assert reclosed["state"] == "closed"
    # Both transitions of the correction carry the same instant; the timeline orders by time only.
    later = reclosed["transitions"][len(closed["transitions"]) :]
    assert sorted((t["to_state"], t["actor"], t["reason"]) for t in later) == [
        ("closed", "correction", "already_defrauded: closure corrected"),
        ("closed", f"outcome:{people.officer.username}", f"visit outcome corrected: {reason}"),
    ]
    [task] = [t for t in reclosed["tasks"] if t["id"] == visit["id"]]
    assert task["status"] == "done"
    # The correction was the only thing it changed: no new task (the flow is not re-run).
    assert {t["id"] for t in reclosed["tasks"]} == {t["id"] for t in closed["tasks"]}

    # A second correction, back to the first answer, re-closes it again.
    back = {**body, "corrects": corrected.json()["id"], "correction_reason": "the transfer was the family's own"}
    assert (await post(feedback, people.officer, back)).status_code == 201
    await case_when(
        dispatch, people.chief, visit["case_id"], lambda c: c["closure"] == "false_positive", "the second re-closure"
    )
