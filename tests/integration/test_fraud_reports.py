"""Crime reports from the upstream feed (contract §4), matched to warnings to count post-warning cases (预警后发案).

Warnings go the real way (intake → warnings.received → feedback's read model); reports are posted to feedback
with a feed's API key. Matching is observed as an admin would: `GET /v1/stats/rates` grouped by area, over a
window that starts when the test starts, in an area of this module's own, so only the test's warnings count.
A report is matched in the request that stores it, and a warning in the transaction that stores it, so once
the rates show a warning, whether it was matched is decided: "not matched" is checked at that point, then a
report that should match proves the warning was there to be matched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.cli import admin
from shared.devinfra import wait_for
from shared.settings import CommonSettings
from tests.conftest import AppClient, Member, SourceCredentials
from tests.factories import mobile, valid_id_number, warning_record

AREA, STATION = "370202-094", "发案测试派出所"
AREA_CSV = f"area_code,area_name,station,street,district\n{AREA},发案警务区,{STATION},发案街道,市南区\n".encode()
PROBLEM_JSON = "application/problem+json"
#: What a report's answer holds, whatever it matched: nothing tells the feed whether someone was warned.
ANSWER_FIELDS = {"id", "external_id", "reported_at", "status"}


@dataclass(frozen=True)
class Feed:
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
async def area(common_settings: CommonSettings, intake: AppClient, dispatch: AppClient) -> str:
    await admin.areas_import(common_settings, AREA_CSV)
    await wait_for(
        lambda: AREA in intake.app.state.intake.areas.codes, timeout=30, message="intake to learn the test area"
    )
    return AREA


async def new_feed(settings: CommonSettings) -> Feed:
    name = f"test-feed-{uuid.uuid4().hex[:12]}"
    return Feed(name, await admin.feed_add(settings, name))


@pytest.fixture
async def feed(common_settings: CommonSettings) -> Feed:
    return await new_feed(common_settings)


def report(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": f"R-{uuid.uuid4().hex}",
        "reported_at": datetime.now(UTC).isoformat(),
        "subject": {"phone": mobile()},
        "loss": 1234.5,
        "fraud_type": "investment",
    }
    body.update(overrides)
    return body


class PostWarning:
    """The test area's post-warning figures over [start, start + 1 day), as an admin reads them."""

    def __init__(self, feedback: AppClient, chief: Member) -> None:
        self.feedback = feedback
        self.chief = chief
        self.start = datetime.now(UTC)

    async def counts(self) -> tuple[int, int]:
        """(post_warning_cases, warned_subjects)."""
        window = {"from": self.start.isoformat(), "to": (self.start + timedelta(days=1)).isoformat()}
        response = await self.feedback.get(
            "/v1/stats/rates", params={**window, "group_by": "area"}, headers=self.chief.headers
        )
        assert response.status_code == 200, response.text
        ours = [g for g in response.json()["groups"] if g["key"] == {"area": AREA}]
        if not ours:
            return 0, 0
        [group] = ours
        assert group["post_warning_cases"] == group["counts"]["post_warning_rate"]["numerator"]
        return group["post_warning_cases"], group["counts"]["post_warning_rate"]["denominator"]

    async def reach(self, expected: tuple[int, int]) -> None:
        async def there() -> bool:
            return await self.counts() == expected

        try:
            await wait_for(there, timeout=30, interval=0.1, message=f"(post-warning cases, warned) = {expected}")
        except TimeoutError:
            raise AssertionError(f"expected {expected}, the rates show {await self.counts()}") from None


async def warn(intake: AppClient, source: SourceCredentials, **subject: str) -> dict[str, Any]:
    """Post a warning of the test area through intake; returns the record posted."""
    record = warning_record(area_code=AREA)
    record["subject"].update(subject)
    posted = await intake.post("/v1/warnings", json=record, headers=source.headers)
    assert posted.status_code == 202, posted.text
    assert posted.json()["assigned"] is True, posted.text
    return record


async def send(feedback: AppClient, feed: Feed, body: dict[str, Any]) -> httpx.Response:
    return await feedback.post("/v1/fraud-reports", json=body, headers=feed.headers)


def created(response: httpx.Response, body: dict[str, Any]) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    assert set(answer) == ANSWER_FIELDS, answer
    assert (answer["status"], answer["external_id"]) == ("created", body["external_id"])
    assert datetime.fromisoformat(answer["reported_at"]) == datetime.fromisoformat(body["reported_at"])
    return answer


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def fraud_report_counters(feedback: AppClient) -> dict[str, float]:
    text = (await feedback.get("/metrics")).text
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "quanzu_fraud_reports_total":
                counters[sample.labels["result"]] = sample.value
            elif sample.name == "quanzu_post_warning_matches_total":
                counters["matches"] = sample.value
    return counters


# --- matching ---------------------------------------------------------------------------------------------


async def test_a_report_after_a_warning_on_the_same_phone_is_a_post_warning_case(
    intake: AppClient, feedback: AppClient, source: SourceCredentials, feed: Feed, admin_member: Member, area: str
) -> None:
    rates = PostWarning(feedback, admin_member)
    warned = await warn(intake, source)
    await rates.reach((0, 1))  # feedback knows the warning; nothing matched yet
    phone = warned["subject"]["phone"]
    # The feed writes the number its own way: normalised like intake's, it is the same phone.
    body = report(subject={"phone": f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"})
    answer = created(await send(feedback, feed, body), body)
    await rates.reach((1, 1))
    # Another warned subject, unmatched, counts in the denominator only.
    await warn(intake, source)
    await rates.reach((1, 2))
    assert set(answer) == ANSWER_FIELDS


async def test_a_report_naming_only_the_id_number_is_matched(
    intake: AppClient, feedback: AppClient, source: SourceCredentials, feed: Feed, admin_member: Member, area: str
) -> None:
    rates = PostWarning(feedback, admin_member)
    id_number = valid_id_number()
    await warn(intake, source, id_number=id_number)
    await rates.reach((0, 1))
    body = report(subject={"id_number": f" {id_number.lower()} "})
    created(await send(feedback, feed, body), body)
    await rates.reach((1, 1))


async def test_a_report_that_arrives_before_its_warning_is_matched_when_the_warning_arrives(
    intake: AppClient, feedback: AppClient, source: SourceCredentials, feed: Feed, admin_member: Member, area: str
) -> None:
    """The feed is sometimes faster than the warning: the crime is reported (a little after the warning was
    issued) before feedback has heard of the warning. The warning's arrival matches it."""
    rates = PostWarning(feedback, admin_member)
    phone, id_number = mobile(), valid_id_number()
    by_phone = report(subject={"phone": phone}, reported_at=(rates.start + timedelta(minutes=10)).isoformat())
    by_id = report(subject={"id_number": id_number}, reported_at=(rates.start + timedelta(days=3)).isoformat())
    created(await send(feedback, feed, by_phone), by_phone)
    created(await send(feedback, feed, by_id), by_id)
    assert await rates.counts() == (0, 0)
    await warn(intake, source, phone=phone)
    await rates.reach((1, 1))
    await warn(intake, source, id_number=id_number)
    await rates.reach((2, 2))


async def test_a_report_outside_the_30_days_after_a_warning_is_not_matched(
    intake: AppClient, feedback: AppClient, source: SourceCredentials, feed: Feed, admin_member: Member, area: str
) -> None:
    rates = PostWarning(feedback, admin_member)
    # Reports that reach feedback before their warnings: one before the warning, one 31 days after it.
    early_phone, late_phone = mobile(), mobile()
    early_first = report(subject={"phone": early_phone}, reported_at=(rates.start - timedelta(hours=1)).isoformat())
    late_first = report(subject={"phone": late_phone}, reported_at=(rates.start + timedelta(days=31)).isoformat())
    created(await send(feedback, feed, early_first), early_first)
    created(await send(feedback, feed, late_first), late_first)
    await warn(intake, source, phone=early_phone)
    await warn(intake, source, phone=late_phone)
    await rates.reach((0, 2))  # both warnings known, neither matched
    # Reports after the warnings arrived: before one warning, more than 30 days after the other.
    warned = datetime.now(UTC)  # after both warnings were received
    early = report(subject={"phone": late_phone}, reported_at=(rates.start - timedelta(minutes=5)).isoformat())
    late = report(subject={"phone": early_phone}, reported_at=(warned + timedelta(days=31)).isoformat())
    created(await send(feedback, feed, early), early)
    created(await send(feedback, feed, late), late)
    assert await rates.counts() == (0, 2)  # a report is matched in the request that stores it
    # Within the 30 days after the warning (29 days on), the same phones are matched: they were matchable.
    within = report(subject={"phone": early_phone}, reported_at=(warned + timedelta(days=29)).isoformat())
    created(await send(feedback, feed, within), within)
    await rates.reach((1, 2))
    within = report(subject={"phone": late_phone}, reported_at=warned.isoformat())
    created(await send(feedback, feed, within), within)
    await rates.reach((2, 2))


async def test_the_answer_is_the_same_whether_or_not_a_warning_matched(
    intake: AppClient, feedback: AppClient, source: SourceCredentials, feed: Feed, admin_member: Member, area: str
) -> None:
    """No oracle: a feed (or whoever holds its key) cannot learn from the answer whether someone was warned."""
    rates = PostWarning(feedback, admin_member)
    warned = await warn(intake, source)
    await rates.reach((0, 1))
    matching = report(subject={"phone": warned["subject"]["phone"]})
    unknown = report(subject={"phone": mobile()})
    answers = [await send(feedback, feed, body) for body in (matching, unknown)]
    await rates.reach((1, 1))
    first, second = (created(a, b) for a, b in zip(answers, (matching, unknown), strict=True))
    assert set(first) == set(second) == ANSWER_FIELDS
    assert {k: v for k, v in first.items() if k not in ("id", "external_id", "reported_at")} == {
        k: v for k, v in second.items() if k not in ("id", "external_id", "reported_at")
    }
    assert answers[0].headers.keys() == answers[1].headers.keys()
    for answer in answers:
        assert "warning" not in answer.text.lower() and "match" not in answer.text.lower()


# --- retries ----------------------------------------------------------------------------------------------


async def test_a_retry_is_answered_with_the_first_report_and_changes_nothing(
    intake: AppClient,
    feedback: AppClient,
    source: SourceCredentials,
    feed: Feed,
    admin_member: Member,
    area: str,
    common_settings: CommonSettings,
) -> None:
    rates = PostWarning(feedback, admin_member)
    warned = await warn(intake, source)
    await rates.reach((0, 1))
    body = report(subject={"phone": warned["subject"]["phone"]})
    first = created(await send(feedback, feed, body), body)
    await rates.reach((1, 1))

    before = await fraud_report_counters(feedback)
    retried = await send(feedback, feed, body)
    assert retried.status_code == 200, retried.text
    assert retried.json() == {**first, "status": "duplicate"}
    after = await fraud_report_counters(feedback)
    assert after.get("accepted") == before.get("accepted")  # nothing stored
    assert after.get("matches") == before.get("matches")  # nothing matched again
    assert after.get("duplicate", 0) == before.get("duplicate", 0) + 1
    assert await rates.counts() == (1, 1)

    # The same external_id for another report is the feed's mistake, not a retry.
    changed = await send(feedback, feed, {**body, "loss": 99.0})
    assert problem(changed, 409)["type"].endswith("/report-conflict")
    assert (await send(feedback, feed, body)).json()["status"] == "duplicate"  # the first report stands
    # External ids are the feed's own: another feed may use the same one.
    other = await new_feed(common_settings)
    created(await send(feedback, other, body), body)


# --- who may post -----------------------------------------------------------------------------------------


async def test_only_a_feed_with_its_current_key_may_post_reports(
    feedback: AppClient,
    source: SourceCredentials,
    feed: Feed,
    admin_member: Member,
    common_settings: CommonSettings,
) -> None:
    body = report()
    anonymous = problem(await feedback.post("/v1/fraud-reports", json=body), 401)
    assert anonymous["type"].endswith("/unauthorized")
    unknown = await feedback.post("/v1/fraud-reports", json=body, headers={"X-API-Key": f"qz_{uuid.uuid4().hex}"})
    problem(unknown, 401)
    # An intake source's key is not a feed's key.
    problem(await feedback.post("/v1/fraud-reports", json=body, headers=source.headers), 401)
    problem(await feedback.post("/v1/fraud-reports", json=body, headers={"X-API-Key": source.key}), 401)
    # A member is authenticated but not a feed; a forged or expired token is not authenticated at all.
    problem(await feedback.post("/v1/fraud-reports", json=body, headers=admin_member.headers), 403)
    forged = {"Authorization": "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}
    problem(await feedback.post("/v1/fraud-reports", json=body, headers=forged), 401)

    revoked = await new_feed(common_settings)
    created(await send(feedback, revoked, body), body)
    await admin.feed_revoke(common_settings, revoked.name)
    again = report()
    problem(await send(feedback, revoked, again), 401)
    problem(await feedback.post("/v1/fraud-reports", json=again, headers={"X-API-Key": revoked.key}), 401)
    # Nothing of the refused calls was stored: the feeds' first posts of the bodies are created.
    created(await feedback.post("/v1/fraud-reports", json=again, headers={"X-API-Key": feed.key}), again)
    created(await send(feedback, feed, body), body)


# --- validation -------------------------------------------------------------------------------------------


def _bad_id_number() -> str:
    good = valid_id_number()
    wrong = next(d for d in "0123456789X" if d != good[-1])
    return good[:-1] + wrong


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no_phone_nor_id", {"subject": {}}, "subject"),
    ("empty_phone_and_id", {"subject": {"phone": " ", "id_number": ""}}, "subject"),
    ("bad_phone", {"subject": {"phone": "12345"}}, "subject.phone"),
    ("foreign_phone", {"subject": {"phone": "+1 202 555 0100"}}, "subject.phone"),
    ("bad_id_number", {"subject": {"id_number": _bad_id_number()}}, "subject.id_number"),
    ("naive_reported_at", {"reported_at": "2026-11-21T08:31:00"}, "reported_at"),
    ("negative_loss", {"loss": -1.0}, "loss"),
    ("unknown_fraud_type", {"fraud_type": "alchemy"}, "fraud_type"),
    ("extra_field", {"victim_name": "张三"}, "victim_name"),
    ("extra_subject_field", {"subject": {"phone": mobile(), "name": "张三"}}, "subject.name"),
]


@pytest.mark.parametrize(("change", "field"), [(c, f) for _, c, f in INVALID], ids=[n for n, _, _ in INVALID])
async def test_an_invalid_report_is_refused_naming_the_field_and_nothing_is_stored(
    feedback: AppClient, feed: Feed, change: dict[str, Any], field: str
) -> None:
    valid = report(subject={"phone": mobile(), "id_number": valid_id_number()})
    refused = problem(await send(feedback, feed, {**valid, **change}), 422)
    assert refused["type"].endswith("/validation")
    assert field in [e["field"] for e in refused["errors"]], refused
    for value in (change.get("subject") or {}).values():  # the refusal does not echo the numbers sent
        if len(value) > 6:
            assert value not in str(refused)
    # Nothing was stored under the external_id: the valid report is new, not a duplicate.
    created(await send(feedback, feed, valid), valid)


async def test_a_report_without_the_required_fields_is_refused(feedback: AppClient, feed: Feed) -> None:
    for missing in ("external_id", "reported_at", "subject"):
        body = {k: v for k, v in report().items() if k != missing}
        refused = problem(await send(feedback, feed, body), 422)
        assert missing in [e["field"] for e in refused["errors"]], refused
