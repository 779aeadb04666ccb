"""The rates (contract §5) and the monthly bulletin, against known answers, through the real path.

Cases, tasks, SMS receipts, breaches and closures are produced onto `dispatch.events`, and warnings onto
`warnings.received`, as dispatch and intake publish them; feedback's consumers build its read model from them.
Outcomes are posted over HTTP to feedback, crime reports with a feed's API key. Nothing is written to the
database directly.

The database is shared with the whole suite, whose data is "now": every test here works in its own window of
2018 or 2019, in areas of this module's own (with deadlines far away, for the cases the real dispatch opens from
the warnings produced here), and asks for the rates with explicit `from`/`to`.

Windows: 2018-07..12 the bulletin; 2019-02..04 the known answer; 2019-05 group by area; 2019-06..08 month
boundary and time zones; 2019-10 false positives; 2019-11 corrections; 2015-01 nothing at all.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer

from services.cli import admin
from services.dispatch.areas.policy import parse_areas_csv
from shared.devinfra import Broker, wait_for
from shared.events import (
    CaseClosedV1,
    CaseOpenedV1,
    Envelope,
    SlaBreachedV1,
    SmsSentV1,
    SubjectData,
    TaskCreatedV1,
    Topic,
    WarningReceivedV1,
)
from shared.kafka import make_producer
from shared.personal import subject_key
from shared.settings import CommonSettings
from tests.conftest import SUBJECT_SECRET, AppClient, Member, new_member
from tests.factories import mobile, valid_id_number
from tests.integration.test_outcomes import SLOW

SHANGHAI = ZoneInfo("Asia/Shanghai")
PROBLEM_JSON = "application/problem+json"
#: The module's own areas: six areas, five streets (湖光街道 has two areas), four stations.
AREAS_CSV = """area_code,area_name,station,street,district
370202-061,湖光警务区,湖光派出所,湖光街道,市南区
370202-062,山色警务区,湖光派出所,湖光街道,市南区
370202-063,松涛警务区,松涛派出所,松涛街道,市南区
370202-064,云海警务区,云海派出所,云海街道,市南区
370202-065,月湾警务区,月湾派出所,月湾街道,市南区
370202-066,星桥警务区,月湾派出所,星桥街道,市南区
""".encode()
RATE_NAMES = (
    "call_connected_rate", "call_attempt_connected_rate", "visit_met_rate", "dissuasion_rate",
    "overall_dissuasion_rate", "post_warning_rate", "antifraud_app_install_rate", "sla_compliance_sms",
    "sla_compliance_call", "sla_compliance_visit", "sla_compliance_follow_up",
)  # fmt: skip
#: Deadlines of the crafted tasks, from their creation.
DUE = {"sms": timedelta(seconds=60), "call": timedelta(minutes=5), "visit": timedelta(hours=1)}
ON_TIME = {"sms": timedelta(seconds=20), "call": timedelta(minutes=3), "visit": timedelta(minutes=30)}
LATE = {"sms": timedelta(minutes=2), "call": timedelta(minutes=8), "visit": timedelta(minutes=90)}
#: Marker tasks (see `Craft.settle`) are due here, in no window any test asks about.
MARKER_TIME = datetime(2001, 1, 1, tzinfo=UTC)
DISPATCH_SOURCE = "quanzu/dispatch"
WARNING_SOURCE = "rates-test"


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A wall-clock time of the district (Asia/Shanghai)."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


@dataclass(frozen=True)
class Area:
    code: str
    name: str
    station: str
    street: str


@dataclass(frozen=True)
class Task:
    id: uuid.UUID
    case_id: uuid.UUID
    tier: str
    created_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class Subject:
    phone: str
    id_number: str


DispatchEvent = CaseOpenedV1 | TaskCreatedV1 | SmsSentV1 | SlaBreachedV1 | CaseClosedV1


class Craft:
    """Events as dispatch and intake publish them, produced onto the real topics (sent without waiting, then
    flushed), and a way to wait until feedback has handled them."""

    def __init__(self, producer: AIOKafkaProducer, feedback: AppClient, reader: Member) -> None:
        self.producer = producer
        self.feedback = feedback
        self.reader = reader
        self.sent: list[asyncio.Future[Any]] = []

    async def _dispatch(self, case_id: uuid.UUID, data: DispatchEvent, *, partition: int | None = None) -> None:
        envelope = Envelope.new(data.TYPE, DISPATCH_SOURCE, data, subject=str(case_id))
        self.sent.append(
            await self.producer.send(
                Topic.DISPATCH_EVENTS, envelope.to_bytes(), key=str(case_id).encode(), partition=partition
            )
        )

    async def case(
        self, area: Area | None, received_at: datetime | None, *, opened_at: datetime | None = None
    ) -> uuid.UUID:
        """case.opened; `received_at` is the opening warning's intake time (None: an event from before the field
        existed, where opened_at stands in)."""
        case_id = uuid.uuid4()
        opened = opened_at or (received_at or MARKER_TIME) + timedelta(seconds=5)
        event = CaseOpenedV1(
            case_id=case_id, warning_id=uuid.uuid4(), subject_key=uuid.uuid4().hex, source=WARNING_SOURCE,
            area_code=area.code if area else None, station=area.station if area else None,
            street=area.street if area else None, risk_level="high", fraud_type="investment", in_progress=False,
            residency="unknown", rewarned=False, opened_at=opened, warning_received_at=received_at,
        )  # fmt: skip
        await self._dispatch(case_id, event)
        return case_id

    async def task(
        self,
        case_id: uuid.UUID,
        area: Area | None,
        tier: str,
        created_at: datetime,
        *,
        attempt: int = 1,
        due_in: timedelta | None = None,
        partition: int | None = None,
    ) -> Task:
        task = Task(uuid.uuid4(), case_id, tier, created_at, created_at + (due_in or DUE[tier]))
        event = TaskCreatedV1(
            task_id=task.id, case_id=case_id, tier=tier, attempt=attempt, area_code=area.code if area else None,
            station=area.station if area else None, team_id=None, created_at=created_at, due_at=task.due_at,
            ack_due_at=None if tier == "sms" else created_at + timedelta(minutes=2), reason="rates test",
        )  # fmt: skip
        await self._dispatch(case_id, event, partition=partition)
        return task

    async def sms_sent(self, task: Task, at: datetime, *, accepted: bool = True) -> None:
        await self._dispatch(task.case_id, SmsSentV1(task_id=task.id, case_id=task.case_id, accepted=accepted, at=at))

    async def breach(self, task: Task, area: Area, kind: str = "due") -> None:
        event = SlaBreachedV1(
            task_id=task.id, case_id=task.case_id, tier=task.tier, kind=kind, area_code=area.code,
            due_at=task.due_at, at=task.due_at,
        )  # fmt: skip
        await self._dispatch(task.case_id, event)

    async def close(self, case_id: uuid.UUID, area: Area, closure: str, at: datetime) -> None:
        await self._dispatch(case_id, CaseClosedV1(case_id=case_id, closure=closure, area_code=area.code, at=at))

    async def warning(self, area: Area, received_at: datetime, subject: Subject) -> uuid.UUID:
        """warning.received as intake publishes it (keyed by the subject key). The real dispatch opens a case for
        it (a case of this window, by the warning's intake time); feedback keeps its keyed hashes."""
        key = subject_key(SUBJECT_SECRET, phone=subject.phone, id_number=subject.id_number)
        warning = WarningReceivedV1(
            warning_id=uuid.uuid4(), source=WARNING_SOURCE, external_id=f"W-{uuid.uuid4().hex}",
            issued_at=received_at - timedelta(minutes=1), received_at=received_at,
            subject=SubjectData(phone=subject.phone, name="测试", id_number=subject.id_number),
            subject_key=key, area_code=area.code, assigned=True, fraud_type="investment", risk_level="high",
            in_progress=False, amount_at_risk=None, evidence={},
        )  # fmt: skip
        envelope = Envelope.new(warning.TYPE, "quanzu/intake", warning, subject=key)
        self.sent.append(await self.producer.send(Topic.WARNINGS_RECEIVED, envelope.to_bytes(), key=key.encode()))
        return warning.warning_id

    async def settle(self) -> None:
        """Wait until feedback has handled every dispatch event produced so far. A partition is consumed in order,
        so a marker task produced last onto each partition of dispatch.events, once feedback knows it, proves
        everything before it was handled. (Markers are due in 2001, outside every window asked about.)"""
        markers = set()
        for partition in sorted(await self.producer.partitions_for(Topic.DISPATCH_EVENTS)):
            marker = await self.task(uuid.uuid4(), None, "sms", MARKER_TIME, partition=partition)
            markers.add(marker.id)
        await self.producer.flush()
        for sent in self.sent:
            sent.result()  # raises if the broker refused anything
        self.sent.clear()

        async def all_known() -> bool:
            for marker_id in sorted(markers):
                response = await self.feedback.get(
                    "/v1/outcomes", params={"task_id": str(marker_id)}, headers=self.reader.headers
                )
                if response.status_code == 404:
                    return False
                assert response.status_code == 200, response.text
                markers.discard(marker_id)
            return True

        await wait_for(all_known, timeout=90, interval=0.1, message="feedback to handle the events produced")


def call_outcome(task: Task, result: str, after: timedelta, dissuasion: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_id": str(task.id), "kind": "call", "call_result": result,
        "recorded_at": (task.created_at + after).isoformat(),
    }  # fmt: skip
    if dissuasion is not None:
        body["dissuasion_result"] = dissuasion
    return body


def visit_outcome(task: Task, result: str, after: timedelta, *, app_installed: bool | None = None) -> dict[str, Any]:
    """A visit outcome; with `app_installed` not None, with the field checklist (四查看、三询问、一保护)."""
    body: dict[str, Any] = {
        "task_id": str(task.id), "kind": "visit", "dissuasion_result": result,
        "recorded_at": (task.created_at + after).isoformat(),
    }  # fmt: skip
    if app_installed is not None:
        body["checklist"] = {
            "checked_call_log": True, "checked_sms": True, "checked_apps": True, "checked_transfers": False,
            "asked_stranger_contact": True, "asked_money_sent": True, "asked_codes_shared": False,
            "antifraud_app_installed": app_installed,
        }  # fmt: skip
        body["position"] = {"lat": 36.05, "lon": 120.35}
    return body


async def post_outcomes(
    feedback: AppClient, outcomes: Sequence[tuple[Member, dict[str, Any]]], *, chunk: int = 50
) -> list[dict[str, Any]]:
    """POST /v1/outcomes for every (member, body), `chunk` at a time; every one must be recorded."""
    recorded: list[dict[str, Any]] = []
    for start in range(0, len(outcomes), chunk):
        responses = await asyncio.gather(*(
            feedback.post("/v1/outcomes", json=body, headers=member.headers)
            for member, body in outcomes[start : start + chunk]
        ))  # fmt: skip
        for response in responses:
            assert response.status_code == 201, response.text
            recorded.append(response.json())
    return recorded


async def get_rates(
    feedback: AppClient, reader: Member, start: str, end: str, group_by: str | None = None
) -> dict[str, Any]:
    params = {"from": start, "to": end, **({"group_by": group_by} if group_by else {})}
    response = await feedback.get("/v1/stats/rates", params=params, headers=reader.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def one_group(feedback: AppClient, reader: Member, start: str, end: str) -> dict[str, Any]:
    body = await get_rates(feedback, reader, start, end)
    [group] = body["groups"]
    assert group["key"] == {}
    return dict(group)


def figures(group: dict[str, Any], *names: str) -> dict[str, tuple[int, int]]:
    """(numerator, denominator) of the named rates, after checking each rate is its ratio (null on 0)."""
    out = {}
    for name in names or RATE_NAMES:
        numerator, denominator = group["counts"][name]["numerator"], group["counts"][name]["denominator"]
        rate = group["rates"][name]
        if denominator == 0:
            assert rate is None, f"{name}: nothing to divide by, yet the rate is {rate!r}"
        else:
            assert rate == pytest.approx(numerator / denominator), name
        out[name] = (numerator, denominator)
    return out


async def until_counted(feedback: AppClient, reader: Member, start: str, end: str, *, cases: int, warned: int) -> None:
    """Wait until the window holds at least `cases` cases and `warned` warned subjects: the cases the real
    dispatch opens from the produced warnings, and the warnings, have reached feedback's read model."""

    async def there() -> bool:
        group = await one_group(feedback, reader, start, end)
        return bool(group["cases"] >= cases and group["counts"]["post_warning_rate"]["denominator"] >= warned)

    await wait_for(there, timeout=60, interval=0.2, message=f"{cases} cases and {warned} warned subjects")


def percentile_cont(values: Sequence[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def new_subject() -> Subject:
    return Subject(mobile(), valid_id_number())


def report(reported_at: datetime, *, phone: str | None = None, id_number: str | None = None) -> dict[str, Any]:
    subject = {k: v for k, v in (("phone", phone), ("id_number", id_number)) if v is not None}
    return {
        "external_id": f"R-{uuid.uuid4().hex}", "reported_at": reported_at.isoformat(), "subject": subject,
        "loss": 5000.0, "fraud_type": "investment",
    }  # fmt: skip


async def post_reports(feedback: AppClient, feed_key: str, reports: Sequence[dict[str, Any]]) -> None:
    responses = await asyncio.gather(*(
        feedback.post("/v1/fraud-reports", json=body, headers={"X-API-Key": feed_key}) for body in reports
    ))  # fmt: skip
    for response in responses:
        assert response.status_code == 201, response.text


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def producer(broker: Broker) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(broker.bootstrap, client_id="test-rates")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="module")
async def areas(common_settings: CommonSettings, dispatch: AppClient) -> dict[str, Area]:
    """The module's areas, in the registry (and so in feedback's copy), with deadlines a day away: the cases the
    real dispatch opens from this module's warnings see no deadline fall due while a test runs."""
    rows, errors = parse_areas_csv(AREAS_CSV)
    assert not errors
    await admin.areas_import(common_settings, AREAS_CSV)
    for row in rows:
        await admin.policy_set(common_settings, row.area_code, SLOW)
    return {r.area_code: Area(r.area_code, r.area_name, r.station, r.street) for r in rows}


@pytest.fixture(scope="module")
async def chief(common_settings: CommonSettings, dispatch: AppClient) -> Member:
    """A district admin: reads the rates of the whole district."""
    return await new_member(common_settings, dispatch, "admin")


@pytest.fixture
async def craft(producer: AIOKafkaProducer, feedback: AppClient, chief: Member) -> Craft:
    return Craft(producer, feedback, chief)


@pytest.fixture
async def feed_key(common_settings: CommonSettings) -> str:
    return await admin.feed_add(common_settings, f"rates-feed-{uuid.uuid4().hex[:12]}")


# --- 1. the known answer ----------------------------------------------------------------------------------------


def call_plan(i: int) -> list[str]:
    """The call attempts of the known answer's case i: 450 of 600 cases connected, in 800 attempts."""
    if i < 100:
        return ["no_answer", "connected"]
    if i < 450:
        return ["connected"]
    if i < 500:
        return ["no_answer", "busy", "powered_off"]
    return ["no_answer"]


def visit_result(v: int) -> str:
    """200 finished visits: 170 dissuaded, 10 not dissuaded, 5 already defrauded, 15 not met."""
    return "dissuaded" if v < 170 else "not_dissuaded" if v < 180 else "already_defrauded" if v < 185 else "not_met"


def closures(i: int) -> list[str]:
    """case.closed events of case i, in order (a re-closure after a corrected outcome: the latest counts)."""
    if i < 10:
        return ["not_dissuaded", "dissuaded"]
    if i < 300:
        return ["dissuaded"]
    if i == 300:
        return ["dissuaded", "not_dissuaded"]
    if i < 400:
        return ["not_dissuaded"]
    if i < 440:
        return ["unreachable"]
    if i < 460:
        return ["sms_only"]
    if i < 490:
        return ["false_positive"]
    return []


async def sms_events(craft: Craft, area: Area, sms: Task, k: int) -> None:
    """SMS task k of 100: 90 accepted in time (5 of them reported twice, the second time late), 5 accepted late,
    3 refused by the provider (2 of them then declared overdue), 2 with no news at all."""
    if k < 90:
        await craft.sms_sent(sms, sms.created_at + ON_TIME["sms"])
        if k < 5:
            await craft.sms_sent(sms, sms.created_at + timedelta(minutes=10))  # the first receipt counts
    elif k < 95:
        await craft.sms_sent(sms, sms.created_at + LATE["sms"])
    elif k < 98:
        await craft.sms_sent(sms, sms.created_at + timedelta(seconds=10), accepted=False)
        if k < 97:
            await craft.breach(sms, area)


async def test_the_rates_of_a_month_are_the_known_answer(
    dispatch: AppClient,
    feedback: AppClient,
    common_settings: CommonSettings,
    areas: dict[str, Area],
    chief: Member,
    craft: Craft,
    feed_key: str,
) -> None:
    area = areas["370202-061"]
    team = await admin.team_add(common_settings, f"rates-{uuid.uuid4().hex[:8]}", area.code, backup=False)
    operator = await new_member(common_settings, dispatch, "operator", station=area.station)
    officer = await new_member(common_settings, dispatch, "officer", team=team.name)

    outcomes: list[tuple[Member, dict[str, Any]]] = []
    first_contact: list[float] = []  # seconds from intake to the connected call, per connected case
    j = 0  # call attempts so far: every tenth is recorded late; some are declared overdue
    for i in range(600):
        received = local(2019, 3, 1, 1) + timedelta(minutes=70 * i)  # up to 2019-03-30
        case_id = await craft.case(area, received)
        if i < 100:
            await sms_events(craft, area, await craft.task(case_id, area, "sms", received + timedelta(minutes=1)), i)
        for attempt, result in enumerate(call_plan(i), start=1):
            created = received + timedelta(minutes=2 + 10 * (attempt - 1))
            call = await craft.task(case_id, area, "call", created, attempt=attempt)
            late = j % 10 == 0
            after = LATE["call"] if late else ON_TIME["call"]
            dissuaded = "dissuaded" if result == "connected" and i < 300 else None
            outcomes.append((operator, call_outcome(call, result, after, dissuaded)))
            if result == "connected":
                first_contact.append((created + after - received).total_seconds())
            if (late and j < 400) or (j % 10 == 1 and j < 200):
                await craft.breach(call, area)  # overdue: 40 of the late ones, and 20 recorded in time but sent late
            elif j % 10 == 2 and j < 300:
                await craft.breach(call, area, "ack")  # acknowledged late, done in time: no miss
            j += 1
        if i >= 400:
            v = i - 400
            visit = await craft.task(case_id, area, "visit", received + timedelta(minutes=40))
            after = LATE["visit"] if v % 20 == 19 else ON_TIME["visit"]
            checklist = (v < 96) if v < 160 else None  # 160 visits with the checklist, 96 of them installed the app
            outcomes.append((officer, visit_outcome(visit, visit_result(v), after, app_installed=checklist)))
        for n, closure in enumerate(closures(i)):
            await craft.close(case_id, area, closure, received + timedelta(hours=3 + n))
    for k in range(15):  # calls not finished: 10 still open (not due yet), 5 declared overdue
        received = local(2019, 3, 31, 12) + timedelta(minutes=10 * k)
        case_id = await craft.case(area, received)
        call = await craft.task(case_id, area, "call", received + timedelta(minutes=2))
        if k >= 10:
            await craft.breach(call, area)
    assert (len(outcomes), j) == (1000, 800)

    # Ten warned subjects in March; one in February, outside the window.
    warned = [new_subject() for _ in range(10)]
    warned_at = [local(2019, 3, 5 + 2 * k, 9) for k in range(10)]
    for subject, when in zip(warned, warned_at, strict=True):
        await craft.warning(area, when, subject)
    february = new_subject()
    await craft.warning(area, local(2019, 2, 20, 10), february)

    await craft.settle()
    await post_outcomes(feedback, outcomes)
    # The real dispatch opens a case for each warning (intake time: the warning's).
    await until_counted(feedback, chief, "2019-03-01", "2019-04-01", cases=615 + 10, warned=10)
    await until_counted(feedback, chief, "2019-02-01", "2019-03-01", cases=1, warned=1)

    def spaced(phone: str) -> str:
        return f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}"

    s, at = warned, warned_at
    day = timedelta(days=1)
    await post_reports(feedback, feed_key, [
        # six match a warning of the window: by phone (in any spelling) or by ID number, within 30 days after it
        report(at[0] + day, phone=s[0].phone),
        report(at[1] + 10 * day, phone=spaced(s[1].phone)),
        report(at[2] + 29 * day + timedelta(hours=23), phone=s[2].phone),
        report(at[3] + 5 * day, phone=s[3].phone, id_number=valid_id_number()),
        report(at[4] + 2 * day, id_number=s[4].id_number),
        report(at[5] + 3 * day, phone=mobile(), id_number=s[5].id_number),
        # fourteen do not: nobody warned, too late, before the warning, or a warning of another window
        *(report(local(2019, 3, 15) + n * day, phone=mobile()) for n in range(5)),
        report(at[0] + day, id_number=valid_id_number()),
        report(at[6] + 30 * day + timedelta(hours=1), phone=s[6].phone),
        report(at[7] + 45 * day, phone=s[7].phone),
        report(at[8] + 31 * day, id_number=s[8].id_number),
        report(at[6] - timedelta(hours=1), phone=s[6].phone),
        report(at[9] - day, phone=s[9].phone),
        report(at[9] - timedelta(minutes=5), id_number=s[9].id_number),
        report(local(2019, 3, 2, 10), phone=february.phone),
        report(local(2019, 3, 5, 10), id_number=february.id_number),
    ])  # fmt: skip

    march = await one_group(feedback, chief, "2019-03-01", "2019-04-01")
    assert march["cases"] == 625
    assert figures(march) == {
        "call_connected_rate": (450, 600),
        "call_attempt_connected_rate": (450, 800),
        "visit_met_rate": (185, 200),
        "dissuasion_rate": (170, 200),
        "overall_dissuasion_rate": (300, 460),
        "post_warning_rate": (6, 10),
        "antifraud_app_install_rate": (96, 160),
        "sla_compliance_sms": (90, 97),
        "sla_compliance_call": (700, 805),
        "sla_compliance_visit": (190, 200),
        "sla_compliance_follow_up": (0, 0),
    }
    assert march["rates"]["call_connected_rate"] == 0.75
    assert march["rates"]["dissuasion_rate"] == 0.85
    assert march["rates"]["post_warning_rate"] == 0.6
    assert march["rates"]["sla_compliance_follow_up"] is None
    assert march["post_warning_cases"] == 6
    call_contact = march["time_to_first_contact"]["call"]
    assert call_contact["count"] == 450
    assert call_contact["p50"] == pytest.approx(percentile_cont(first_contact, 0.5), abs=1e-3)
    assert call_contact["p90"] == pytest.approx(percentile_cont(first_contact, 0.9), abs=1e-3)
    assert march["time_to_first_contact"]["visit"]["count"] == 185

    feb = await one_group(feedback, chief, "2019-02-01", "2019-03-01")
    assert (feb["post_warning_cases"], figures(feb, "post_warning_rate")) == (1, {"post_warning_rate": (1, 1)})


# --- 2. grouped by area -------------------------------------------------------------------------------------------


async def test_grouped_by_area_each_area_has_its_own_counts(
    feedback: AppClient, areas: dict[str, Area], chief: Member, craft: Craft, feed_key: str
) -> None:
    lake, pine = areas["370202-062"], areas["370202-063"]
    plans: list[tuple[Area | None, list[tuple[str, str | None]]]] = [
        (lake, [("connected", "dissuaded")] * 3 + [("connected", "not_met"), ("no_answer", None)]),
        (pine, [("connected", "not_dissuaded"), ("no_answer", "not_dissuaded")] + [("no_answer", None)] * 4),
        (None, [("connected", None)]),  # a case of no known area: a group of its own
    ]
    outcomes: list[tuple[Member, dict[str, Any]]] = []
    received = local(2019, 5, 10, 9)
    for area, cases in plans:
        for call_result, visit_result_ in cases:
            received += timedelta(hours=1)
            case_id = await craft.case(area, received)
            call = await craft.task(case_id, area, "call", received + timedelta(minutes=2))
            outcomes.append((chief, call_outcome(call, call_result, ON_TIME["call"])))
            if visit_result_ is not None:
                visit = await craft.task(case_id, area, "visit", received + timedelta(minutes=20))
                outcomes.append((chief, visit_outcome(visit, visit_result_, ON_TIME["visit"])))
    subjects = {lake: [new_subject() for _ in range(2)], pine: [new_subject() for _ in range(3)]}
    for n, (area, warned) in enumerate(subjects.items()):
        for k, subject in enumerate(warned):
            await craft.warning(area, local(2019, 5, 20 + n, 9 + k), subject)
    await craft.settle()
    await post_outcomes(feedback, outcomes)
    await until_counted(feedback, chief, "2019-05-01", "2019-06-01", cases=12 + 5, warned=5)
    await post_reports(feedback, feed_key, [
        report(local(2019, 5, 25), phone=subjects[lake][0].phone),
        report(local(2019, 5, 26), phone=subjects[pine][0].phone),
        report(local(2019, 5, 27), id_number=subjects[pine][2].id_number),
    ])  # fmt: skip

    body = await get_rates(feedback, chief, "2019-05-01", "2019-06-01", "area")
    assert body["group_by"] == ["area"]
    groups = {g["key"]["area"]: g for g in body["groups"]}
    assert [g["key"] for g in body["groups"]] == [{"area": None}, {"area": lake.code}, {"area": pine.code}]
    names = ("call_connected_rate", "call_attempt_connected_rate", "visit_met_rate", "dissuasion_rate",
             "post_warning_rate")  # fmt: skip
    assert figures(groups[lake.code], *names) == {
        "call_connected_rate": (4, 5), "call_attempt_connected_rate": (4, 5), "visit_met_rate": (3, 4),
        "dissuasion_rate": (3, 4), "post_warning_rate": (1, 2),
    }  # fmt: skip
    assert figures(groups[pine.code], *names) == {
        "call_connected_rate": (1, 6), "call_attempt_connected_rate": (1, 6), "visit_met_rate": (2, 2),
        "dissuasion_rate": (0, 2), "post_warning_rate": (2, 3),
    }  # fmt: skip
    assert groups[pine.code]["rates"]["dissuasion_rate"] == 0.0  # visits that dissuaded nobody: 0, not null
    assert figures(groups[None], *names) == {
        "call_connected_rate": (1, 1), "call_attempt_connected_rate": (1, 1), "visit_met_rate": (0, 0),
        "dissuasion_rate": (0, 0), "post_warning_rate": (0, 0),
    }  # fmt: skip
    per_area = {code: (g["cases"], g["post_warning_cases"]) for code, g in groups.items()}
    assert per_area == {lake.code: (5 + 2, 1), pine.code: (6 + 3, 2), None: (1, 0)}

    by_station = await get_rates(feedback, chief, "2019-05-01", "2019-06-01", "station,street,month")
    assert {(g["key"]["station"], g["key"]["street"], g["key"]["month"]): g["cases"] for g in by_station["groups"]} == {
        (lake.station, lake.street, "2019-05"): 7,
        (pine.station, pine.street, "2019-05"): 9,
        (None, None, "2019-05"): 1,
    }
    total = await one_group(feedback, chief, "2019-05-01", "2019-06-01")
    assert figures(total, "call_connected_rate", "post_warning_rate") == {
        "call_connected_rate": (6, 12), "post_warning_rate": (3, 5),
    }  # fmt: skip


# --- 3. no data ---------------------------------------------------------------------------------------------------


async def test_a_window_without_data_has_null_rates_not_zero(feedback: AppClient, chief: Member) -> None:
    body = await get_rates(feedback, chief, "2015-01-01", "2015-02-01")
    assert (body["from"], body["to"], body["group_by"]) == (
        "2015-01-01T00:00:00+08:00",
        "2015-02-01T00:00:00+08:00",
        [],
    )
    [group] = body["groups"]
    assert group["key"] == {}
    assert group["rates"] == dict.fromkeys(RATE_NAMES)
    assert group["counts"] == {name: {"numerator": 0, "denominator": 0} for name in RATE_NAMES}
    assert (group["cases"], group["post_warning_cases"]) == (0, 0)
    assert group["time_to_first_contact"] == {
        tier: {"p50": None, "p90": None, "count": 0} for tier in ("sms", "call", "visit")
    }
    for group_by in ("area", "month", "area,fraud_type,week"):
        grouped = await get_rates(feedback, chief, "2015-01-01", "2015-02-01", group_by)
        assert grouped["groups"] == [], group_by

    bulletin = await feedback.get("/v1/reports/monthly", params={"month": "2015-01"}, headers=chief.headers)
    assert bulletin.status_code == 200, bulletin.text
    assert (bulletin.json()["areas"], bulletin.json()["streets"], bulletin.json()["supervised_streets"]) == ([], [], [])


# --- 4. false positives -------------------------------------------------------------------------------------------


async def test_false_positives_are_left_out_of_both_sides_of_the_dissuasion_rates(
    feedback: AppClient, areas: dict[str, Area], chief: Member, craft: Craft
) -> None:
    cloud, moon = areas["370202-064"], areas["370202-065"]
    visits: list[tuple[Area, str, str]] = [  # (area, visit outcome, closure)
        *[(cloud, "dissuaded", "dissuaded")] * 4,
        *[(cloud, "not_dissuaded", "not_dissuaded")] * 2,
        *[(cloud, "false_positive", "false_positive")] * 3,
        (cloud, "not_met", "unreachable"),
        *[(moon, "false_positive", "false_positive")] * 2,  # nothing left to judge: null, not 0
    ]
    outcomes: list[tuple[Member, dict[str, Any]]] = []
    received = local(2019, 10, 8, 9)
    for area, result, closure in visits:
        received += timedelta(hours=2)
        case_id = await craft.case(area, received)
        visit = await craft.task(case_id, area, "visit", received + timedelta(minutes=5))
        outcomes.append((chief, visit_outcome(visit, result, ON_TIME["visit"])))
        await craft.close(case_id, area, closure, received + timedelta(hours=1))
    for dissuasion in ("false_positive", "dissuaded"):  # settled by phone
        received += timedelta(hours=2)
        case_id = await craft.case(cloud, received)
        call = await craft.task(case_id, cloud, "call", received + timedelta(minutes=2))
        outcomes.append((chief, call_outcome(call, "connected", ON_TIME["call"], dissuasion)))
        await craft.close(case_id, cloud, dissuasion, received + timedelta(minutes=10))
    await craft.settle()
    await post_outcomes(feedback, outcomes)

    body = await get_rates(feedback, chief, "2019-10-01", "2019-11-01", "area")
    groups = {g["key"]["area"]: g for g in body["groups"]}
    assert set(groups) == {cloud.code, moon.code}
    names = ("dissuasion_rate", "overall_dissuasion_rate", "visit_met_rate")
    assert figures(groups[cloud.code], *names) == {
        "dissuasion_rate": (4, 7),  # 10 visits, 3 false positives
        "overall_dissuasion_rate": (5, 8),  # 12 closed, 4 false positives
        "visit_met_rate": (9, 10),  # a false positive was met
    }
    assert figures(groups[moon.code], *names) == {
        "dissuasion_rate": (0, 0), "overall_dissuasion_rate": (0, 0), "visit_met_rate": (2, 2),
    }  # fmt: skip
    assert groups[moon.code]["rates"]["dissuasion_rate"] is None
    assert groups[moon.code]["rates"]["overall_dissuasion_rate"] is None


# --- 5. corrections -----------------------------------------------------------------------------------------------


async def test_a_corrected_outcome_counts_once_and_a_second_outcome_is_refused(
    feedback: AppClient, areas: dict[str, Area], chief: Member, craft: Craft
) -> None:
    star = areas["370202-066"]
    received = local(2019, 11, 5, 10)
    first = await craft.case(star, received)
    call = await craft.task(first, star, "call", received + timedelta(minutes=2))
    corrected_visit = await craft.task(first, star, "visit", received + timedelta(minutes=20))
    second = await craft.case(star, received + timedelta(hours=1))
    other_visit = await craft.task(second, star, "visit", received + timedelta(hours=1, minutes=20))
    await craft.settle()
    original_call, original, _ = await post_outcomes(feedback, [
        (chief, call_outcome(call, "no_answer", ON_TIME["call"])),
        (chief, visit_outcome(corrected_visit, "not_dissuaded", ON_TIME["visit"])),
        (chief, visit_outcome(other_visit, "dissuaded", ON_TIME["visit"])),
    ])  # fmt: skip
    names = ("dissuasion_rate", "visit_met_rate", "call_connected_rate", "call_attempt_connected_rate",
             "sla_compliance_visit", "sla_compliance_call")  # fmt: skip
    before = await one_group(feedback, chief, "2019-11-01", "2019-12-01")
    assert figures(before, *names) == {
        "dissuasion_rate": (1, 2), "visit_met_rate": (2, 2), "call_connected_rate": (0, 1),
        "call_attempt_connected_rate": (0, 1), "sla_compliance_visit": (2, 2), "sla_compliance_call": (1, 1),
    }  # fmt: skip

    # A second outcome for the task, not marked as a correction: refused, naming the current one.
    again = visit_outcome(corrected_visit, "dissuaded", timedelta(hours=2))
    refused = await feedback.post("/v1/outcomes", json=again, headers=chief.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["outcome_id"] == original["id"]
    # The correction, recorded after the deadline (the task was done in time: its first outcome says so).
    correction = {**again, "corrects": original["id"], "correction_reason": "见面时已劝阻，误录为未劝阻"}
    [corrected] = await post_outcomes(feedback, [(chief, correction)])
    assert (corrected["corrects"], corrected["dissuasion_result"]) == (original["id"], "dissuaded")
    stale = await feedback.post("/v1/outcomes", json=correction, headers=chief.headers)
    assert stale.status_code == 409, stale.text  # it names an outcome that is no longer the current one
    call_fix = {
        **call_outcome(call, "connected", ON_TIME["call"], "dissuaded"),
        "corrects": original_call["id"], "correction_reason": "接通后误录为无人接听",
    }  # fmt: skip
    await post_outcomes(feedback, [(chief, call_fix)])

    after = await one_group(feedback, chief, "2019-11-01", "2019-12-01")
    assert figures(after, *names) == {
        "dissuasion_rate": (2, 2), "visit_met_rate": (2, 2), "call_connected_rate": (1, 1),
        "call_attempt_connected_rate": (1, 1), "sla_compliance_visit": (2, 2), "sla_compliance_call": (1, 1),
    }  # fmt: skip
    assert after["cases"] == 2
    history = await feedback.get("/v1/outcomes", params={"task_id": str(corrected_visit.id)}, headers=chief.headers)
    assert [(o["id"], o["superseded_by"]) for o in history.json()] == [
        (original["id"], corrected["id"]),
        (corrected["id"], None),
    ]


# --- 6. a case across a month boundary ----------------------------------------------------------------------------


async def test_a_case_counts_in_the_month_of_its_warning_not_of_its_outcomes(
    feedback: AppClient, areas: dict[str, Area], chief: Member, craft: Craft
) -> None:
    lake = areas["370202-061"]
    # Warned at 23:30 on 30 June (local time), called and visited after midnight, closed on 1 July.
    spanning = await craft.case(lake, local(2019, 6, 30, 23, 30))
    call = await craft.task(spanning, lake, "call", local(2019, 6, 30, 23, 31), due_in=timedelta(minutes=45))
    visit = await craft.task(spanning, lake, "visit", local(2019, 7, 1, 0, 20))
    await craft.close(spanning, lake, "dissuaded", local(2019, 7, 1, 1))
    # Warned on 30 June, opened by dispatch on 1 July: the intake time counts.
    late_open = await craft.case(lake, local(2019, 6, 30, 23, 59), opened_at=local(2019, 7, 1, 0, 1))
    late_call = await craft.task(late_open, lake, "call", local(2019, 7, 1, 0, 2))
    # An event from before warning_received_at existed: opened_at stands in for it.
    legacy = await craft.case(lake, None, opened_at=local(2019, 6, 30, 23, 45))
    legacy_call = await craft.task(legacy, lake, "call", local(2019, 6, 30, 23, 46))
    await craft.settle()
    await post_outcomes(feedback, [
        (chief, call_outcome(call, "connected", local(2019, 7, 1, 0, 10) - call.created_at)),
        (chief, visit_outcome(visit, "dissuaded", ON_TIME["visit"])),
        (chief, call_outcome(late_call, "connected", ON_TIME["call"])),
        (chief, call_outcome(legacy_call, "no_answer", ON_TIME["call"])),
    ])  # fmt: skip

    names = ("call_connected_rate", "call_attempt_connected_rate", "dissuasion_rate", "overall_dissuasion_rate",
             "sla_compliance_call", "sla_compliance_visit")  # fmt: skip
    june = await one_group(feedback, chief, "2019-06-01", "2019-07-01")
    assert june["cases"] == 3
    assert figures(june, *names) == {
        "call_connected_rate": (2, 3), "call_attempt_connected_rate": (2, 3), "dissuasion_rate": (1, 1),
        "overall_dissuasion_rate": (1, 1),
        # deadlines count where they fall: only the legacy case's call was due in June
        "sla_compliance_call": (1, 1), "sla_compliance_visit": (0, 0),
    }  # fmt: skip
    july = await one_group(feedback, chief, "2019-07-01", "2019-08-01")
    assert july["cases"] == 0
    assert figures(july, *names) == {
        "call_connected_rate": (0, 0), "call_attempt_connected_rate": (0, 0), "dissuasion_rate": (0, 0),
        "overall_dissuasion_rate": (0, 0), "sla_compliance_call": (2, 2), "sla_compliance_visit": (1, 1),
    }  # fmt: skip
    by_month = await get_rates(feedback, chief, "2019-06-01", "2019-08-01", "month")
    assert [(g["key"], g["cases"]) for g in by_month["groups"]] == [
        ({"month": "2019-06"}, 3),
        ({"month": "2019-07"}, 0),
    ]


# --- 7. time zones ------------------------------------------------------------------------------------------------


async def test_days_weeks_and_months_are_the_districts_local_ones(
    feedback: AppClient, areas: dict[str, Area], chief: Member, craft: Craft
) -> None:
    hill = areas["370202-062"]
    received = datetime(2019, 7, 31, 17, tzinfo=UTC)  # 2019-08-01 01:00 in Asia/Shanghai
    case_id = await craft.case(hill, received)
    call = await craft.task(case_id, hill, "call", received + timedelta(minutes=1))
    await craft.settle()
    await post_outcomes(feedback, [(chief, call_outcome(call, "connected", ON_TIME["call"]))])

    monthly = await get_rates(feedback, chief, "2019-08-01", "2019-09-01", "month")
    assert (monthly["from"], monthly["to"]) == ("2019-08-01T00:00:00+08:00", "2019-09-01T00:00:00+08:00")
    [august] = monthly["groups"]
    assert (august["key"], august["cases"]) == ({"month": "2019-08"}, 1)
    assert figures(august, "call_connected_rate") == {"call_connected_rate": (1, 1)}
    daily = await get_rates(feedback, chief, "2019-07-31", "2019-08-02", "day")
    assert [(g["key"], g["cases"]) for g in daily["groups"]] == [({"day": "2019-08-01"}, 1)]
    year, week, _ = date(2019, 8, 1).isocalendar()
    weekly = await get_rates(feedback, chief, "2019-07-29", "2019-08-05", "week")
    assert [(g["key"], g["cases"]) for g in weekly["groups"]] == [({"week": f"{year}-W{week:02d}"}, 1)]
    assert f"{year}-W{week:02d}" == "2019-W31"

    async def cases(start: str, end: str) -> int:
        return int((await one_group(feedback, chief, start, end))["cases"])

    assert await cases("2019-07-31", "2019-08-01") == 0  # 31 July, local time: before the case
    assert await cases("2019-08-01", "2019-08-02") == 1  # 1 August, local time
    assert await cases("2019-07-31T00:00:00Z", "2019-08-01T00:00:00Z") == 1  # 31 July in UTC
    assert await cases("2019-08-01T00:00:00Z", "2019-08-02T00:00:00Z") == 0  # 1 August in UTC
    assert await cases("2019-08-01T00:00:00", "2019-08-01T01:00:00") == 0  # `to` is exclusive
    assert await cases("2019-08-01T01:00:00", "2019-08-01T01:00:01") == 1  # `from` is inclusive
    assert await cases("2019-08-01T01:00:00+08:00", "2019-07-31T17:00:01+00:00") == 1


# --- 8. the monthly bulletin --------------------------------------------------------------------------------------

#: Visits (dissuaded, finished) per area: December 2018 (the bulletin's month) and September 2018 (its Q3).
DECEMBER = {"370202-061": (9, 10), "370202-062": (6, 10), "370202-063": (10, 10), "370202-065": (5, 10),
            "370202-066": (3, 10)}  # fmt: skip
SEPTEMBER = {"370202-061": (4, 10), "370202-063": (10, 10), "370202-064": (3, 10), "370202-065": (1, 10),
             "370202-066": (9, 10)}  # fmt: skip
#: Warned subjects in December per area, and how many of them were victims afterwards (post-warning cases).
DECEMBER_WARNED = {"370202-063": (1, 1), "370202-065": (2, 2), "370202-066": (2, 1)}


async def test_the_monthly_bulletin_ranks_areas_and_streets_and_flags_supervision(
    feedback: AppClient, areas: dict[str, Area], chief: Member, craft: Craft, feed_key: str
) -> None:
    outcomes: list[tuple[Member, dict[str, Any]]] = []
    for start, plan in ((local(2018, 12, 2, 8), DECEMBER), (local(2018, 9, 2, 8), SEPTEMBER)):
        received = start
        for code, (dissuaded, finished) in plan.items():
            for n in range(finished):
                received += timedelta(hours=1)
                case_id = await craft.case(areas[code], received)
                visit = await craft.task(case_id, areas[code], "visit", received + timedelta(minutes=30))
                result = "dissuaded" if n < dissuaded else "not_dissuaded"
                outcomes.append((chief, visit_outcome(visit, result, ON_TIME["visit"])))
    cloud = areas["370202-064"]
    for n in range(3):  # 云海: calls only in December, no visit to judge it by
        received = local(2018, 12, 20, 8 + n)
        case_id = await craft.case(cloud, received)
        call = await craft.task(case_id, cloud, "call", received + timedelta(minutes=2))
        outcomes.append((chief, call_outcome(call, "connected", ON_TIME["call"], "dissuaded")))
    victims: list[dict[str, Any]] = []
    warned_at = local(2018, 12, 3, 9)
    for code, (warned, matched) in DECEMBER_WARNED.items():
        for k in range(warned):
            subject, warned_at = new_subject(), warned_at + timedelta(days=1)
            await craft.warning(areas[code], warned_at, subject)
            if k < matched:
                victims.append(report(warned_at + timedelta(days=2), id_number=subject.id_number))
    await craft.settle()
    await post_outcomes(feedback, outcomes)
    await until_counted(feedback, chief, "2018-12-01", "2019-01-01", cases=53 + 5, warned=5)
    await until_counted(feedback, chief, "2018-09-01", "2018-10-01", cases=50, warned=0)
    await post_reports(feedback, feed_key, victims)

    async def bulletin_with_names() -> dict[str, Any] | None:
        response = await feedback.get("/v1/reports/monthly", params={"month": "2018-12"}, headers=chief.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if all(a["area_name"] for a in body["areas"]) else None

    # Area names come from feedback's copy of the registry (registry.events).
    bulletin = await wait_for(bulletin_with_names, timeout=30, interval=0.2, message="feedback to know the areas")
    assert (bulletin["month"], bulletin["from"], bulletin["to"]) == (
        "2018-12", "2018-12-01T00:00:00+08:00", "2019-01-01T00:00:00+08:00",
    )  # fmt: skip
    assert bulletin["quarters"] == ["2018-Q3", "2018-Q4"]
    # Fewest post-warning cases first, then the highest dissuasion rate; no visit ranks after every rate.
    ranked = [(a["key"], a["rank"], a["post_warning_cases"], a["dissuasion_rate"], a["worst_three"]) for a in
              bulletin["areas"]]  # fmt: skip
    assert ranked == [
        ("370202-061", 1, 0, 0.9, False),
        ("370202-062", 2, 0, 0.6, False),
        ("370202-064", 3, 0, None, False),
        ("370202-063", 4, 1, 1.0, True),
        ("370202-066", 5, 1, 0.3, True),
        ("370202-065", 6, 2, 0.5, True),
    ]
    area = {a["key"]: a for a in bulletin["areas"]}
    assert (area["370202-063"]["area_name"], area["370202-063"]["station"], area["370202-063"]["street"]) == (
        "松涛警务区", "松涛派出所", "松涛街道",
    )  # fmt: skip
    assert (area["370202-066"]["warned_subjects"], area["370202-066"]["post_warning_rate"]) == (2, 0.5)
    assert (area["370202-066"]["cases"], area["370202-066"]["finished_visits"]) == (10 + 2, 10)
    assert (area["370202-064"]["cases"], area["370202-064"]["call_connected_rate"]) == (3, 1.0)
    streets = [(s["key"], s["rank"], s["worst_three"], s["supervised"]) for s in bulletin["streets"]]
    assert streets == [
        ("湖光街道", 1, False, False),  # two areas: 15 of 20 visits
        ("云海街道", 2, False, False),
        ("松涛街道", 3, True, False),
        ("星桥街道", 4, True, False),
        ("月湾街道", 5, True, True),  # among the worst three in 2018-Q3 too
    ]
    assert bulletin["supervised_streets"] == ["月湾街道"]

    csv_response = await feedback.get(
        "/v1/reports/monthly", params={"month": "2018-12"}, headers={**chief.headers, "Accept": "text/csv"}
    )
    assert csv_response.status_code == 200, csv_response.text
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert "quanzu-bulletin-2018-12.csv" in csv_response.headers["content-disposition"]
    assert csv_response.content.startswith(b"\xef\xbb\xbf")
    text = csv_response.content.decode("utf-8-sig")
    assert "湖光警务区" in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["section"], r["rank"], r["key"], r["worst_three"]) for r in rows[:6]] == [
        ("area", str(rank), key, "yes" if worst else "no") for key, rank, _, _, worst in ranked
    ]
    assert {r["key"]: r["area_name"] for r in rows if r["section"] == "area"} == {
        code: a.name for code, a in areas.items()
    }
    assert [(r["section"], r["key"], r["supervised"]) for r in rows[6:]] == [
        ("street", key, "yes" if supervised else "no") for key, _, _, supervised in streets
    ]


# --- 9. bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/reports/monthly", {"month": "2019-13"}, "month"),
        ("/v1/reports/monthly", {"month": "2019-1"}, "month"),
        ("/v1/reports/monthly", {"month": "201912"}, "month"),
        ("/v1/stats/rates", {"from": "2019-03-01", "to": "2019-04-01", "group_by": "nope"}, "group_by"),
        ("/v1/stats/rates", {"from": "2019-03-01", "to": "2019-04-01", "group_by": "day,month"}, "group_by"),
        ("/v1/stats/rates", {"from": "2019-03-01", "to": "2019-04-01", "group_by": "area,area"}, "group_by"),
        ("/v1/stats/rates", {"from": "2019-04-01", "to": "2019-03-01"}, "to"),
        ("/v1/stats/rates", {"from": "2019-03-01", "to": "2019-03-01"}, "to"),
        ("/v1/stats/rates", {"from": "2019-03-32", "to": "2019-04-01"}, "from"),
        ("/v1/stats/rates", {"from": "2016-01-01", "to": "2019-01-01"}, "to"),
    ],
)
async def test_bad_queries_are_refused_naming_the_field(
    feedback: AppClient, chief: Member, path: str, params: dict[str, str], field: str
) -> None:
    response = await feedback.get(path, params=params, headers=chief.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert [e["field"] for e in response.json()["errors"]] == [field]
