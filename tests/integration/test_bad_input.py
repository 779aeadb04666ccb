"""The bad-input catalogue: every bad input tried at every entry point, through the real services, database and
broker. Each case is a row of the "Bad input" table in docs/RELIABILITY.md, and every row is a case here:
`test_the_reliability_table_is_this_catalogue` keeps the two the same (`python -m tests.integration.test_bad_input`
prints the table).

- HTTP: the bad request goes to the running service; the answer must be the status, as problem+json, naming the
  field in `errors` (or, for 400/401/403/404/413/415, saying what is wrong in `detail`); what the entry point would
  have written (rows counted, a task's or a case's state) is the same before and after.
- CLI: `quanzu ...` (services.cli.main) with a bad file or argument exits non-zero with a message naming the line,
  column or field, and nothing is stored (an import is all or nothing).
- Kafka: for each consumed topic, undecodable bytes, JSON that is not an envelope, an unknown event type, a newer
  schema_version and a valid envelope with an invalid payload each land on `<topic>.dlq` once per consuming group,
  the offsets are committed past them, and the next message of the same partition is handled. These run against a
  LocalSystem of their own (services as processes, its own broker and database): other tests read the session's
  topics from their start and expect every record there to be an envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI

from services.cli import admin
from services.cli.main import main as quanzu
from services.cli.system import LocalSystem
from services.dispatch.cases.handlers import OUTCOMES_GROUP
from services.dispatch.cases.handlers import WARNINGS_GROUP as DISPATCH_WARNINGS_GROUP
from services.feedback.areas.handlers import GROUP as FEEDBACK_REGISTRY_GROUP
from services.feedback.cases.handlers import DISPATCH_GROUP
from services.feedback.cases.handlers import WARNINGS_GROUP as FEEDBACK_WARNINGS_GROUP
from services.intake.areas.handlers import GROUP as INTAKE_REGISTRY_GROUP
from services.smsgw.main import create_app as create_smsgw
from shared.db import asyncpg_dsn
from shared.devinfra import Broker, wait_for
from shared.events import (
    AreaUpsertedV1,
    CaseOpenedV1,
    Envelope,
    OutcomeRecordedV1,
    SubjectData,
    TaskEscalatedV1,
    Topic,
    WarningReceivedV1,
    dead_letter_topic,
)
from shared.kafka import make_producer, read_to_end
from shared.pagination import encode_cursor
from shared.personal import subject_key
from shared.settings import CommonSettings
from tests.conftest import SUBJECT_SECRET, AppClient
from tests.factories import mobile, valid_id_number, warning_record

PROBLEM = "application/problem+json"
DOC = Path(__file__).parents[2] / "docs" / "RELIABILITY.md"
TABLE_BEGIN, TABLE_END = "<!-- bad-input-table:begin -->", "<!-- bad-input-table:end -->"
# Everything the task flows could do to the world's tasks waits a day: only a bad request could change them.
SLOW_POLICY = orjson.dumps(
    {
        "sms_within_s": 86400, "call_first_within_s": {"medium": 86400, "high": 86400, "critical": 86400},
        "ack_within_s": 86400, "visit_arrive_within_s": 86400, "follow_up_within_s": 86400,
        "unassigned_within_s": 86400,
    }
)  # fmt: skip
NO_UTC = "0001-01-01T00:00:00+14:00"  # parses, but has no UTC value (before the year 1 there)


# ============================================================================================================ HTTP


@dataclass(frozen=True)
class Http:
    """One bad request. Strings in `path`, `json`, `params` may name the world's objects: <call>, <visit>, <case>,
    <warning>, <area>, <team>, <station>."""

    id: str
    service: str
    method: str
    path: str
    bad: str
    status: int
    field: str | None  # named in `errors[].field`; None when the status and `detail` say it all
    stored: str  # what must not change: "schema.table" (row count), "task:<visit>" / "case:<case>", "smsgw"
    caller: str = "admin"
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    params: dict[str, str] | None = None
    form: dict[str, str] | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    detail: str = ""  # a phrase the problem's detail must contain
    stored_delta: int = 0  # rows the request may add (a batch stores its valid records)


def _record(**change: Any) -> dict[str, Any]:
    return warning_record(area_code="<area>", **change)


def _subject(**change: Any) -> dict[str, Any]:
    return {"phone": mobile(), "name": "张三", "id_number": valid_id_number(), "residency": "resident", **change}


def _wrong_check_digit() -> str:
    good = valid_id_number()
    return good[:-1] + next(d for d in "0123456789X" if d != good[-1])


def _outcome(**change: Any) -> dict[str, Any]:
    return {"task_id": "<call>", "kind": "call", "call_result": "no_answer", **change}


def _report(**change: Any) -> dict[str, Any]:
    body = {"external_id": f"BI-{uuid.uuid4().hex}", "reported_at": "2026-11-21T08:00:00+08:00",
            "subject": {"phone": mobile()}, "loss": 1000.0, "fraud_type": "investment"}  # fmt: skip
    return {**body, **change}


def _member(**change: Any) -> dict[str, Any]:
    return {"username": f"bi-{uuid.uuid4().hex[:8]}", "name": "测试", "role": "officer", "team": "<team>", **change}


AREAS_HEADER = "area_code,area_name,station,street,district\n"
CSV = "text/csv"
WARNINGS, BATCH = "/v1/warnings", "/v1/warnings/batch"
NO_TZ_CURSOR = encode_cursor(f"2026-01-01T00:00:00|{uuid.uuid4()}")
NO_UTC_CURSOR = encode_cursor(f"9999-12-31T23:59:59-23:59|{uuid.uuid4()}")

# fmt: off
HTTP: list[Http] = [
    # --- intake: upstream warnings ------------------------------------------------------------------------------
    Http("intake-malformed-json", "intake", "POST", WARNINGS, "malformed JSON", 400, None, "intake.warnings",
         "source", content=b'{"external_id": ', content_type="application/json", detail="not valid JSON"),
    Http("intake-lone-surrogate", "intake", "POST", WARNINGS, "a lone UTF-16 surrogate (`\\ud800`) in a string",
         400, None, "intake.warnings", "source", content=b'{"external_id": "\\ud800"}',
         content_type="application/json", detail="not valid JSON"),
    Http("intake-not-json", "intake", "POST", WARNINGS, "a body declared `text/plain`", 415, None,
         "intake.warnings", "source", content=orjson.dumps(warning_record()), content_type="text/plain",
         detail="application/json"),
    Http("intake-too-large", "intake", "POST", WARNINGS, "a record over 1 MiB", 413, None, "intake.warnings",
         "source", json=_record(evidence={"notes": "x" * (1024 * 1024)}), detail="exceeds"),
    Http("intake-no-key", "intake", "POST", WARNINGS, "no API key", 401, None, "intake.warnings", "none",
         json=_record(), detail="API key"),
    Http("intake-unknown-key", "intake", "POST", WARNINGS, "an unknown API key", 401, None, "intake.warnings",
         "garbage", json=_record(), detail="API key"),
    Http("intake-array-body", "intake", "POST", WARNINGS, "a JSON array instead of a record", 422, "(body)",
         "intake.warnings", "source", json=[]),
    Http("intake-no-external-id", "intake", "POST", WARNINGS, "no `external_id`", 422, "external_id",
         "intake.warnings", "source", json={k: v for k, v in _record().items() if k != "external_id"}),
    Http("intake-long-external-id", "intake", "POST", WARNINGS, "`external_id` of 129 characters", 422,
         "external_id", "intake.warnings", "source", json=_record(external_id="x" * 129)),
    Http("intake-bad-phone", "intake", "POST", WARNINGS, "`subject.phone` `12345`", 422, "subject.phone",
         "intake.warnings", "source", json=_record(subject=_subject(phone="12345"))),
    Http("intake-foreign-phone", "intake", "POST", WARNINGS, "`subject.phone` `+1 202 555 0100`", 422,
         "subject.phone", "intake.warnings", "source", json=_record(subject=_subject(phone="+1 202 555 0100"))),
    Http("intake-phone-as-number", "intake", "POST", WARNINGS, "`subject.phone` as a JSON number", 422,
         "subject.phone", "intake.warnings", "source", json=_record(subject=_subject(phone=13800138000))),
    Http("intake-id-check-digit", "intake", "POST", WARNINGS, "`subject.id_number` with a wrong check digit", 422,
         "subject.id_number", "intake.warnings", "source",
         json=_record(subject=_subject(id_number=_wrong_check_digit()))),
    Http("intake-id-birth-date", "intake", "POST", WARNINGS, "`subject.id_number` born on 30 February", 422,
         "subject.id_number", "intake.warnings", "source",
         json=_record(subject=_subject(id_number="110101199002301234"))),
    Http("intake-unreachable-subject", "intake", "POST", WARNINGS, "a subject with neither phone nor ID number",
         422, "subject", "intake.warnings", "source", json=_record(subject={"name": "张三"})),
    Http("intake-residency", "intake", "POST", WARNINGS, "`subject.residency` `tourist`", 422, "subject.residency",
         "intake.warnings", "source", json=_record(subject=_subject(residency="tourist"))),
    Http("intake-risk-level", "intake", "POST", WARNINGS, "`risk_level` `extreme`", 422, "risk_level",
         "intake.warnings", "source", json=_record(risk_level="extreme")),
    Http("intake-fraud-type", "intake", "POST", WARNINGS, "`fraud_type` `lottery`", 422, "fraud_type",
         "intake.warnings", "source", json=_record(fraud_type="lottery")),
    Http("intake-naive-issued-at", "intake", "POST", WARNINGS, "`issued_at` without an offset", 422, "issued_at",
         "intake.warnings", "source", json=_record(issued_at="2026-11-21T08:15:00")),
    Http("intake-future-issued-at", "intake", "POST", WARNINGS, "`issued_at` in 2999", 422, "issued_at",
         "intake.warnings", "source", json=_record(issued_at="2999-01-01T00:00:00+08:00")),
    Http("intake-no-utc-issued-at", "intake", "POST", WARNINGS, f"`issued_at` `{NO_UTC}` (no UTC value)", 422,
         "issued_at", "intake.warnings", "source", json=_record(issued_at=NO_UTC)),
    Http("intake-negative-amount", "intake", "POST", WARNINGS, "`amount_at_risk` −1", 422, "amount_at_risk",
         "intake.warnings", "source", json=_record(amount_at_risk=-1)),
    Http("intake-in-progress", "intake", "POST", WARNINGS, '`in_progress` `"perhaps"`', 422, "in_progress",
         "intake.warnings", "source", json=_record(in_progress="perhaps")),
    Http("intake-evidence-shape", "intake", "POST", WARNINGS, "`evidence.urls` a string, not a list", 422,
         "evidence.urls", "intake.warnings", "source", json=_record(evidence={"urls": "http://x"})),
    Http("intake-other-source", "intake", "POST", WARNINGS, "`source` naming another system than the key's", 422,
         "source", "intake.warnings", "source", json=_record(source="someone-else")),
    Http("intake-nul", "intake", "POST", WARNINGS, "a NUL character in `subject.name`", 422, "subject.name",
         "intake.warnings", "source", json=_record(subject=_subject(name="张\x00三"))),
    Http("intake-batch-not-a-list", "intake", "POST", BATCH, '`{"warnings": 5}`', 422, "warnings",
         "intake.warnings", "source", json={"warnings": 5}),
    Http("intake-batch-array", "intake", "POST", BATCH, "a JSON array instead of `{\"warnings\": [...]}`", 422,
         "(body)", "intake.warnings", "source", json=[]),
    Http("intake-batch-too-many", "intake", "POST", BATCH, "1,001 records", 413, None, "intake.warnings",
         "source", json={"warnings": [_record() for _ in range(1001)]}, detail="at most 1000"),
    Http("intake-batch-one-bad", "intake", "POST", BATCH, "one invalid record after a valid one", 200,
         "warnings[1].subject.phone", "intake.warnings", "source", stored_delta=1,
         json={"warnings": [_record(), _record(subject=_subject(phone="12345"))]}),
    Http("intake-get-bad-id", "intake", "GET", "/v1/warnings/not-a-uuid", "a warning id that is not a UUID", 422,
         "path.warning_id", "intake.access_log", "source"),
    Http("intake-get-long-reason", "intake", "GET", "/v1/warnings/<warning>", "`reason` of 201 characters", 422,
         "query.reason", "intake.access_log", params={"reason": "r" * 201}),
    Http("intake-get-nul-reason", "intake", "GET", "/v1/warnings/<warning>", "a NUL in an admin's `reason`", 422,
         "query.reason", "intake.access_log", params={"reason": "审\x00查"}),
    Http("intake-source-name", "intake", "POST", "/v1/admin/sources", "source name `Bad Name!`", 422, "name",
         "intake.sources", json={"name": "Bad Name!"}),
    Http("intake-source-rate", "intake", "POST", "/v1/admin/sources", "`rate_per_s` 0", 422, "rate_per_s",
         "intake.sources", json={"name": f"bi-{uuid.uuid4().hex[:8]}", "rate_per_s": 0}),
    Http("intake-source-nul-name", "intake", "DELETE", "/v1/admin/sources/a%00b", "a NUL in the source name of "
         "the path", 422, "path.name", "intake.source_keys"),
    Http("intake-access-log-cursor", "intake", "GET", "/v1/admin/access-log", "`cursor` encoding `²` (a "
         "Unicode digit)", 422, "cursor", "intake.access_log", params={"cursor": encode_cursor("²")}),
    Http("intake-access-log-limit", "intake", "GET", "/v1/admin/access-log", "`limit` `abc`", 422, "query.limit",
         "intake.access_log", params={"limit": "abc"}),
    # --- dispatch: log in ----------------------------------------------------------------------------------------
    Http("dispatch-grant-type", "dispatch", "POST", "/v1/auth/token", "`grant_type` `magic`", 400, "grant_type",
         "dispatch.refresh_tokens", "none", form={"grant_type": "magic"}),
    Http("dispatch-login-no-password", "dispatch", "POST", "/v1/auth/token", "a password grant without a password",
         400, "password", "dispatch.login_throttle", "none", form={"username": "admin"}),
    Http("dispatch-login-long-username", "dispatch", "POST", "/v1/auth/token", "`username` of 65 characters", 422,
         "username", "dispatch.login_throttle", "none", form={"username": "u" * 65, "password": "x" * 12}),
    Http("dispatch-login-nul", "dispatch", "POST", "/v1/auth/token", "a NUL in `username`", 422, "username",
         "dispatch.login_throttle", "none", form={"username": "ad\x00min", "password": "x" * 12}),
    Http("dispatch-refresh-missing", "dispatch", "POST", "/v1/auth/token", "a refresh grant without the token",
         400, "refresh_token", "dispatch.refresh_tokens", "none", form={"grant_type": "refresh_token"}),
    Http("dispatch-revoke-missing", "dispatch", "POST", "/v1/auth/revoke", "no `refresh_token`", 422,
         "refresh_token", "dispatch.refresh_tokens", "none", form={}),
    Http("dispatch-bad-token", "dispatch", "GET", "/v1/me", "`Authorization: Bearer` with a forged token", 401,
         None, "dispatch.refresh_tokens", "forged", detail="invalid or expired"),
    # --- dispatch: tasks ------------------------------------------------------------------------------------------
    Http("dispatch-tasks-limit", "dispatch", "GET", "/v1/tasks", "`limit` 501", 422, "query.limit",
         "dispatch.access_log", "officer", params={"limit": "501"}),
    Http("dispatch-tasks-status", "dispatch", "GET", "/v1/tasks", "`status` `maybe`", 422, "query.status",
         "dispatch.access_log", "officer", params={"status": "maybe"}),
    Http("dispatch-tasks-cursor", "dispatch", "GET", "/v1/tasks", "`cursor` that is not base64", 422, "cursor",
         "dispatch.access_log", "officer", params={"cursor": "!!!"}),
    Http("dispatch-tasks-cursor-naive", "dispatch", "GET", "/v1/tasks", "`cursor` holding a time without offset",
         422, "cursor", "dispatch.access_log", "officer", params={"cursor": NO_TZ_CURSOR}),
    Http("dispatch-tasks-cursor-no-utc", "dispatch", "GET", "/v1/tasks", "`cursor` holding a time with no UTC "
         "value", 422, "cursor", "dispatch.access_log", "officer", params={"cursor": NO_UTC_CURSOR}),
    Http("dispatch-task-bad-id", "dispatch", "GET", "/v1/tasks/42", "a task id that is not a UUID", 422,
         "path.task_id", "dispatch.access_log", "officer"),
    Http("dispatch-arrive-lat", "dispatch", "POST", "/v1/tasks/<visit>/arrive", "`lat` 91", 422, "lat",
         "task:<visit>", "officer", json={"lat": 91, "lon": 120.35}),
    Http("dispatch-arrive-no-lon", "dispatch", "POST", "/v1/tasks/<visit>/arrive", "no `lon`", 422, "lon",
         "task:<visit>", "officer", json={"lat": 36.05}),
    Http("dispatch-arrive-malformed", "dispatch", "POST", "/v1/tasks/<visit>/arrive", "malformed JSON", 400, None,
         "task:<visit>", "officer", content=b'{"lat": ', content_type="application/json", detail="not valid JSON"),
    Http("dispatch-decline-empty", "dispatch", "POST", "/v1/tasks/<visit>/decline", "an empty `reason`", 422,
         "reason", "task:<visit>", "officer", json={"reason": ""}),
    Http("dispatch-decline-surrogate", "dispatch", "POST", "/v1/tasks/<visit>/decline", "a lone surrogate in "
         "`reason`", 422, "reason", "task:<visit>", "officer", content=b'{"reason": "\\ud800"}',
         content_type="application/json"),
    Http("dispatch-decline-nul", "dispatch", "POST", "/v1/tasks/<visit>/decline", "a NUL in `reason`", 422,
         "reason", "task:<visit>", "officer", json={"reason": "车\x00坏了"}),
    Http("dispatch-accept-long-key", "dispatch", "POST", "/v1/tasks/<visit>/accept", "`Idempotency-Key` of 201 "
         "characters", 422, "Idempotency-Key", "task:<visit>", "officer", headers={"Idempotency-Key": "k" * 201}),
    # --- dispatch: cases -------------------------------------------------------------------------------------------
    Http("dispatch-case-bad-id", "dispatch", "GET", "/v1/cases/x", "a case id that is not a UUID", 422,
         "path.case_id", "dispatch.access_log"),
    Http("dispatch-assign-empty", "dispatch", "POST", "/v1/cases/<case>/assign", "an empty `area_code`", 422,
         "area_code", "case:<case>", json={"area_code": ""}),
    Http("dispatch-assign-unknown", "dispatch", "POST", "/v1/cases/<case>/assign", "an `area_code` not in the "
         "registry", 422, "area_code", "case:<case>", json={"area_code": "999999-999"}),
    Http("dispatch-notifications-limit", "dispatch", "GET", "/v1/dev/notifications", "`limit` 0", 422,
         "query.limit", "dispatch.access_log", params={"limit": "0"}),
    Http("dispatch-access-log-cursor", "dispatch", "GET", "/v1/admin/access-log", "`cursor` encoding 2^63 (past "
         "bigint)", 422, "cursor", "dispatch.access_log", params={"cursor": encode_cursor(str(2**63))}),
    # --- dispatch: administration ------------------------------------------------------------------------------
    Http("dispatch-areas-not-csv", "dispatch", "POST", "/v1/admin/areas", "a file sent as `application/json`",
         415, None, "dispatch.areas", content=b"{}", content_type="application/json", detail="text/csv"),
    Http("dispatch-areas-bad-code", "dispatch", "POST", "/v1/admin/areas", "a CSV whose 2nd row has area code "
         "`not a code!`", 422, "line 3: area_code", "dispatch.areas", content_type=CSV,
         content=f"{AREAS_HEADER}BI-OK-1,甲,站,街,区\nnot a code!,乙,站,街,区\n".encode()),
    Http("dispatch-areas-nul", "dispatch", "POST", "/v1/admin/areas", "a CSV with a NUL in an area name", 422,
         "line 2: area_name", "dispatch.areas", content_type=CSV,
         content=f"{AREAS_HEADER}BI-NUL-1,甲\x00,站,街,区\n".encode()),
    Http("dispatch-areas-not-utf8", "dispatch", "POST", "/v1/admin/areas", "a CSV in GBK, not UTF-8", 422,
         "line 0: (file)", "dispatch.areas", content_type=CSV,
         content=f"{AREAS_HEADER}BI-GBK-1,八大关,站,街,区\n".encode("gbk")),
    Http("dispatch-areas-no-column", "dispatch", "POST", "/v1/admin/areas", "a CSV without the `street` column",
         422, "line 1: (header)", "dispatch.areas", content_type=CSV,
         content=b"area_code,area_name,station,district\nBI-NC-1,a,b,d\n"),
    Http("dispatch-areas-repeat", "dispatch", "POST", "/v1/admin/areas", "a CSV repeating an area code", 422,
         "line 3: area_code", "dispatch.areas", content_type=CSV,
         content=f"{AREAS_HEADER}BI-R-1,甲,站,街,区\nBI-R-1,乙,站,街,区\n".encode()),
    Http("dispatch-team-unknown-area", "dispatch", "POST", "/v1/admin/teams", "a team of an area not in the "
         "registry", 409, "area_code", "dispatch.teams", json={"name": f"bi-{uuid.uuid4().hex}",
                                                                "area_code": "999999-999"}),
    Http("dispatch-team-bad-code", "dispatch", "POST", "/v1/admin/teams", "`area_code` `a b`", 422, "area_code",
         "dispatch.teams", json={"name": f"bi-{uuid.uuid4().hex}", "area_code": "a b"}),
    Http("dispatch-team-nul", "dispatch", "POST", "/v1/admin/teams", "a NUL in the team `name`", 422, "name",
         "dispatch.teams", json={"name": "队\x00名", "area_code": "<area>"}),
    Http("dispatch-member-username", "dispatch", "POST", "/v1/admin/members", "`username` `x`", 422, "username",
         "dispatch.members", json=_member(username="x")),
    Http("dispatch-member-role", "dispatch", "POST", "/v1/admin/members", "`role` `sheriff`", 422, "role",
         "dispatch.members", json=_member(role="sheriff")),
    Http("dispatch-member-affiliation", "dispatch", "POST", "/v1/admin/members", "an officer attached to the "
         "district, not a team", 422, "team", "dispatch.members", json=_member(team=None, district=True)),
    Http("dispatch-member-password", "dispatch", "POST", "/v1/admin/members", "a 9-character password", 422,
         "password", "dispatch.members", json=_member(password="123456789")),
    Http("dispatch-member-unknown-team", "dispatch", "POST", "/v1/admin/members", "a team that does not exist",
         409, "team", "dispatch.members", json=_member(team="no-such-team")),
    Http("dispatch-member-nul", "dispatch", "POST", "/v1/admin/members", "a NUL in `name`", 422, "name",
         "dispatch.members", json=_member(name="王\x00警官")),
    Http("dispatch-deactivate-nul", "dispatch", "POST", "/v1/admin/members/a%00b/deactivate", "a NUL in the "
         "username of the path", 422, "path.username", "dispatch.refresh_tokens"),
    Http("dispatch-policy-unknown-setting", "dispatch", "PUT", "/v1/admin/policies/<area>", "an unknown setting "
         "`nope`", 422, "nope", "dispatch.policies", json={"nope": 1}),
    Http("dispatch-policy-too-long", "dispatch", "PUT", "/v1/admin/policies/<area>", "`visit_arrive_within_s` of "
         "8 days", 422, "visit_arrive_within_s", "dispatch.policies", json={"visit_arrive_within_s": 8 * 86400}),
    Http("dispatch-policy-critical-sms", "dispatch", "PUT", "/v1/admin/policies/<area>", "`sms_only_risk` "
         "including `critical`", 422, "sms_only_risk", "dispatch.policies", json={"sms_only_risk": ["critical"]}),
    Http("dispatch-policy-override", "dispatch", "PUT", "/v1/admin/policies/<area>", "a `by_risk.critical` "
         "override with `call_attempts` `\"x\"`", 422, "by_risk.critical.call_attempts", "dispatch.policies",
         json={"by_risk": {"critical": {"call_attempts": "x"}}}),
    Http("dispatch-policy-risk", "dispatch", "PUT", "/v1/admin/policies/<area>", "a `by_risk` level `extreme`",
         422, "by_risk.extreme.[key]", "dispatch.policies", json={"by_risk": {"extreme": {}}}),
    Http("dispatch-policy-unknown-area", "dispatch", "PUT", "/v1/admin/policies/999999-999", "the policy of an "
         "area not in the registry", 404, None, "dispatch.policies", json={}, detail="no area"),
    # --- feedback: outcomes ---------------------------------------------------------------------------------------
    Http("feedback-outcome-malformed", "feedback", "POST", "/v1/outcomes", "malformed JSON", 400, None,
         "feedback.outcomes", "operator", content=b'{"task_id": ', content_type="application/json",
         detail="not valid JSON"),
    Http("feedback-outcome-kind", "feedback", "POST", "/v1/outcomes", "`kind` `phone`", 422, "kind",
         "feedback.outcomes", "operator", json=_outcome(kind="phone")),
    Http("feedback-outcome-no-call-result", "feedback", "POST", "/v1/outcomes", "a call without `call_result`",
         422, "call_result", "feedback.outcomes", "operator", json=_outcome(call_result=None)),
    Http("feedback-outcome-visit-call-result", "feedback", "POST", "/v1/outcomes", "a visit with a `call_result`",
         422, "call_result", "feedback.outcomes", "officer",
         json=_outcome(task_id="<visit>", kind="visit", dissuasion_result="dissuaded")),
    Http("feedback-outcome-checklist", "feedback", "POST", "/v1/outcomes", "an unknown checklist item", 422,
         "checklist.checked_tea", "feedback.outcomes", "officer",
         json={"task_id": "<visit>", "kind": "visit", "dissuasion_result": "dissuaded",
               "checklist": {"checked_tea": True}}),
    Http("feedback-outcome-position", "feedback", "POST", "/v1/outcomes", "`position.lat` 200", 422,
         "position.lat", "feedback.outcomes", "officer",
         json={"task_id": "<visit>", "kind": "visit", "dissuasion_result": "dissuaded",
               "position": {"lat": 200, "lon": 120}}),
    Http("feedback-outcome-naive-time", "feedback", "POST", "/v1/outcomes", "`recorded_at` without an offset", 422,
         "recorded_at", "feedback.outcomes", "operator", json=_outcome(recorded_at="2026-11-21T08:31:00")),
    Http("feedback-outcome-no-utc", "feedback", "POST", "/v1/outcomes", f"`recorded_at` `{NO_UTC}`", 422,
         "recorded_at", "feedback.outcomes", "operator", json=_outcome(recorded_at=NO_UTC)),
    Http("feedback-outcome-correction", "feedback", "POST", "/v1/outcomes", "`corrects` without "
         "`correction_reason`", 422, "correction_reason", "feedback.outcomes", "operator",
         json=_outcome(corrects=str(uuid.uuid4()))),
    Http("feedback-outcome-wrong-kind", "feedback", "POST", "/v1/outcomes", "a `visit` outcome for a call task",
         422, "kind", "feedback.outcomes", "operator", json=_outcome(kind="visit", call_result=None,
                                                                       dissuasion_result="dissuaded")),
    Http("feedback-outcome-nul", "feedback", "POST", "/v1/outcomes", "a NUL in `note`", 422, "note",
         "feedback.outcomes", "operator", json=_outcome(note="未\x00接")),
    Http("feedback-outcome-surrogate", "feedback", "POST", "/v1/outcomes", "a lone surrogate in `note`", 422,
         "note", "feedback.outcomes", "operator", content_type="application/json",
         content=b'{"task_id": "<call>", "kind": "call", "call_result": "no_answer", "note": "\\ud800"}'),
    Http("feedback-outcome-long-key", "feedback", "POST", "/v1/outcomes", "`Idempotency-Key` of 201 characters",
         422, "Idempotency-Key", "feedback.idempotency_keys", "operator", json=_outcome(),
         headers={"Idempotency-Key": "k" * 201}),
    Http("feedback-outcomes-task-id", "feedback", "GET", "/v1/outcomes", "`task_id` `x`", 422, "query.task_id",
         "feedback.outcomes", "operator", params={"task_id": "x"}),
    # --- feedback: crime reports ---------------------------------------------------------------------------------
    Http("feedback-report-no-key", "feedback", "POST", "/v1/fraud-reports", "no API key", 401, None,
         "feedback.fraud_reports", "none", json=_report(), detail="API key"),
    Http("feedback-report-member", "feedback", "POST", "/v1/fraud-reports", "a member's token instead of a feed's "
         "key", 403, None, "feedback.fraud_reports", "officer", json=_report(), detail="feeds"),
    Http("feedback-report-no-subject", "feedback", "POST", "/v1/fraud-reports", "a subject with neither phone nor "
         "ID number", 422, "subject", "feedback.fraud_reports", "feed", json=_report(subject={})),
    Http("feedback-report-phone", "feedback", "POST", "/v1/fraud-reports", "`subject.phone` `12345`", 422,
         "subject.phone", "feedback.fraud_reports", "feed", json=_report(subject={"phone": "12345"})),
    Http("feedback-report-naive", "feedback", "POST", "/v1/fraud-reports", "`reported_at` without an offset", 422,
         "reported_at", "feedback.fraud_reports", "feed", json=_report(reported_at="2026-11-21T08:00:00")),
    Http("feedback-report-no-utc", "feedback", "POST", "/v1/fraud-reports", f"`reported_at` `{NO_UTC}`", 422,
         "reported_at", "feedback.fraud_reports", "feed", json=_report(reported_at=NO_UTC)),
    Http("feedback-report-loss", "feedback", "POST", "/v1/fraud-reports", "`loss` −5", 422, "loss",
         "feedback.fraud_reports", "feed", json=_report(loss=-5)),
    Http("feedback-report-extra", "feedback", "POST", "/v1/fraud-reports", "an unknown field `victim_name`", 422,
         "victim_name", "feedback.fraud_reports", "feed", json=_report(victim_name="张三")),
    Http("feedback-report-nul", "feedback", "POST", "/v1/fraud-reports", "a NUL in `external_id`", 422,
         "external_id", "feedback.fraud_reports", "feed", json=_report(external_id="110-\x00")),
    # --- feedback: rates and bulletins ---------------------------------------------------------------------------
    Http("feedback-rates-group-by", "feedback", "GET", "/v1/stats/rates", "`group_by` `planet`", 422, "group_by",
         "feedback.access_log", params={"group_by": "planet"}),
    Http("feedback-rates-two-periods", "feedback", "GET", "/v1/stats/rates", "`group_by` `day,month`", 422,
         "group_by", "feedback.access_log", params={"group_by": "day,month"}),
    Http("feedback-rates-from", "feedback", "GET", "/v1/stats/rates", "`from` `yesterday`", 422, "from",
         "feedback.access_log", params={"from": "yesterday"}),
    Http("feedback-rates-empty", "feedback", "GET", "/v1/stats/rates", "`to` before `from`", 422, "to",
         "feedback.access_log", params={"from": "2026-11-02", "to": "2026-11-01"}),
    Http("feedback-rates-long", "feedback", "GET", "/v1/stats/rates", "a window of three years", 422, "to",
         "feedback.access_log", params={"from": "2023-01-01", "to": "2026-01-01"}),
    Http("feedback-rates-no-utc", "feedback", "GET", "/v1/stats/rates", "`from` `0001-01-01` (local midnight has "
         "no UTC value)", 422, "from", "feedback.access_log", params={"from": "0001-01-01", "to": "0001-01-02"}),
    Http("feedback-monthly-month", "feedback", "GET", "/v1/reports/monthly", "`month` `2026-13`", 422, "month",
         "feedback.access_log", params={"month": "2026-13"}),
    Http("feedback-monthly-missing", "feedback", "GET", "/v1/reports/monthly", "no `month`", 422, "query.month",
         "feedback.access_log"),
    Http("feedback-access-log-since", "feedback", "GET", "/v1/admin/access-log", f"`since` `{NO_UTC}`", 422,
         "query.since", "feedback.access_log", params={"since": NO_UTC}),
    # --- the development SMS gateway (a fresh one: faults set here must not reach the session's) -----------------
    Http("smsgw-no-key", "smsgw", "POST", "/v1/messages", "no `Idempotency-Key`", 400, "Idempotency-Key", "smsgw",
         "none", json={"to": "13800138000", "text": "反诈提醒"}),
    Http("smsgw-long-key", "smsgw", "POST", "/v1/messages", "`Idempotency-Key` of 201 characters", 400,
         "Idempotency-Key", "smsgw", "none", json={"to": "13800138000", "text": "反诈提醒"},
         headers={"Idempotency-Key": "k" * 201}),
    Http("smsgw-to", "smsgw", "POST", "/v1/messages", "`to` `call me`", 422, "to", "smsgw", "none",
         json={"to": "call me", "text": "反诈提醒"}, headers={"Idempotency-Key": "k1"}),
    Http("smsgw-text", "smsgw", "POST", "/v1/messages", "an empty `text`", 422, "text", "smsgw", "none",
         json={"to": "13800138000", "text": ""}, headers={"Idempotency-Key": "k2"}),
    Http("smsgw-batch-empty", "smsgw", "POST", "/v1/messages/batch", "no `messages`", 422, "messages", "smsgw",
         "none", json={"messages": []}),
    Http("smsgw-batch-large", "smsgw", "POST", "/v1/messages/batch", "101 `messages`", 422, "messages", "smsgw",
         "none", json={"messages": [{"idempotency_key": "k", "to": "13800138000", "text": "x"}] * 101}),
    Http("smsgw-fail-status", "smsgw", "POST", "/v1/control", "`fail_status` 200", 422, "fail_status", "smsgw",
         "none", json={"fail_rate": 1, "fail_status": 200}),
    Http("smsgw-fail-rate", "smsgw", "POST", "/v1/control", "`fail_rate` 2", 422, "fail_rate", "smsgw", "none",
         json={"fail_rate": 2}),
    Http("smsgw-control-extra", "smsgw", "POST", "/v1/control", "an unknown setting `chaos`", 422, "chaos",
         "smsgw", "none", json={"chaos": True}),
]
# fmt: on


# ============================================================================================================= CLI


@dataclass(frozen=True)
class Cli:
    """One bad `quanzu` command. `{file}` in `argv` is a file holding `file`; `<area>` the world's area."""

    id: str
    argv: tuple[str, ...]
    bad: str
    exit: int
    says: str  # what stderr must say (a regular expression)
    stored: str
    file: bytes | None = None


# fmt: off
CLI: list[Cli] = [
    Cli("areas-bad-code", ("areas", "import", "{file}"), "a CSV whose 2nd row has area code `not a code!`", 1,
        r"line 3: area_code: String should match", "dispatch.areas",
        f"{AREAS_HEADER}BI-CLI-1,甲,站,街,区\nnot a code!,乙,站,街,区\n".encode()),
    Cli("areas-nul", ("areas", "import", "{file}"), "a CSV with a NUL in a station name", 1,
        r"line 2: station: contains a NUL", "dispatch.areas", f"{AREAS_HEADER}BI-CLI-2,甲,站\x00,街,区\n".encode()),
    Cli("areas-not-utf8", ("areas", "import", "{file}"), "a CSV in GBK", 1, r"line 0: \(file\): is not UTF-8",
        "dispatch.areas", f"{AREAS_HEADER}BI-CLI-3,八大关,站,街,区\n".encode("gbk")),
    Cli("areas-no-column", ("areas", "import", "{file}"), "a CSV without the `district` column", 1,
        r"line 1: \(header\): missing column\(s\): district", "dispatch.areas",
        b"area_code,area_name,station,street\nBI-CLI-4,a,b,c\n"),
    Cli("areas-short-row", ("areas", "import", "{file}"), "a row with 3 fields", 1, r"line 3: \(row\): has 3 fields",
        "dispatch.areas", f"{AREAS_HEADER}BI-CLI-5,甲,站,街,区\nBI-CLI-6,乙,站\n".encode()),
    Cli("areas-empty", ("areas", "import", "{file}"), "an empty file", 1, r"line 1: \(header\): the file is empty",
        "dispatch.areas", b""),
    Cli("areas-missing-file", ("areas", "import", "/nonexistent/areas.csv"), "a file that does not exist", 1,
        r"cannot read /nonexistent/areas.csv", "dispatch.areas"),
    Cli("policy-not-json", ("policy", "set", "<area>", "{file}"), "a policy file that is not JSON", 1,
        r"not valid JSON", "dispatch.policies", b"sms_within_s: 60\n"),
    Cli("policy-array", ("policy", "set", "<area>", "{file}"), "a JSON array", 1, r"must hold a JSON object",
        "dispatch.policies", b"[60]"),
    Cli("policy-unknown-setting", ("policy", "set", "<area>", "{file}"), "an unknown setting `sms_within_m`", 1,
        r"sms_within_m: Extra inputs are not permitted", "dispatch.policies", b'{"sms_within_m": 1}'),
    Cli("policy-override", ("policy", "set", "<area>", "{file}"), "`by_risk.high.ack_within_s` 0", 1,
        r"by_risk\.high\.ack_within_s: Input should be greater than or equal to 1", "dispatch.policies",
        b'{"by_risk": {"high": {"ack_within_s": 0}}}'),
    Cli("policy-critical-sms", ("policy", "set", "<area>", "{file}"), "`sms_only_risk` including `critical`", 1,
        r"sms_only_risk: a critical warning can never be SMS only", "dispatch.policies",
        b'{"sms_only_risk": ["low", "critical"]}'),
    Cli("policy-unknown-area", ("policy", "set", "999999-999", "{file}"), "the policy of an unknown area", 1,
        r"no area '999999-999'", "dispatch.policies", b"{}"),
    Cli("team-unknown-area", ("team", "add", "bi-cli-team", "--area", "999999-999"), "a team of an unknown area",
        1, r"no area '999999-999'", "dispatch.teams"),
    Cli("member-password", ("member", "add", "bi-cli-member", "--name", "测试", "--role", "admin", "--district",
                            "--password", "short"), "a 5-character password", 1,
        r"password must be at least 10 characters", "dispatch.members"),
    Cli("member-role", ("member", "add", "bi-cli-member", "--name", "测试", "--role", "sheriff", "--district"),
        "role `sheriff`", 2, r"--role: invalid choice: 'sheriff'", "dispatch.members"),
    Cli("member-username", ("member", "add", "x", "--name", "测试", "--role", "admin", "--district"),
        "username `x`", 1, r"username: String should match pattern", "dispatch.members"),
    Cli("source-name", ("source", "add", "Bad Name!"), "source name `Bad Name!`", 1,
        r"name: String should match pattern", "intake.sources"),
    Cli("source-rate", ("source", "add", "bi-cli-source", "--rate-per-s", "lots"), "`--rate-per-s lots`", 2,
        r"invalid float value: 'lots'", "intake.sources"),
    Cli("replay-naive", ("outbox", "replay", "--since", "2026-11-21T08:00:00"), "`--since` without an offset", 2,
        r"has no UTC offset", "intake.outbox"),
]
# fmt: on


# =========================================================================================================== Kafka

POISON_KINDS = {
    "undecodable": "bytes that are not JSON",
    "not-an-envelope": "JSON that is not an envelope",
    "unknown-type": "an envelope of an unknown event type",
    "newer-version": "a valid payload under a newer `schema_version`",
    "invalid-payload": "an envelope whose payload fails validation",
}
#: What `dlq.error` says of each (a regular expression, matched at its start).
DLQ_ERROR = {
    "undecodable": r"undecodable envelope: ",
    "not-an-envelope": r"undecodable envelope: ",
    "unknown-type": r"unreadable envelope: unknown event type 'bad-input\.unheard-of'",
    "newer-version": r"unreadable envelope: [a-z.]+ schema_version 2 is newer than this consumer reads \(1\)",
    "invalid-payload": r"ValidationError: ",
}
ENVELOPES = ("unknown-type", "newer-version", "invalid-payload")  # the kinds that are envelopes, with an id
#: Every consumer group of each topic: each dead-letters a poison message on its own.
CONSUMERS: dict[str, tuple[str, ...]] = {
    Topic.WARNINGS_RECEIVED: (DISPATCH_WARNINGS_GROUP, FEEDBACK_WARNINGS_GROUP),
    Topic.DISPATCH_EVENTS: (DISPATCH_GROUP,),
    Topic.FEEDBACK_OUTCOMES: (OUTCOMES_GROUP,),
    Topic.REGISTRY_EVENTS: (INTAKE_REGISTRY_GROUP, FEEDBACK_REGISTRY_GROUP),
}
CONSUMING_SERVICE = {
    DISPATCH_WARNINGS_GROUP: "dispatch", FEEDBACK_WARNINGS_GROUP: "feedback", DISPATCH_GROUP: "feedback",
    OUTCOMES_GROUP: "dispatch", INTAKE_REGISTRY_GROUP: "intake", FEEDBACK_REGISTRY_GROUP: "feedback",
}  # fmt: skip


# ========================================================================================================= the table


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    """The "Bad input" table of docs/RELIABILITY.md, from the catalogue."""
    rows = ["| entry point | bad input | answer | stored? | test |", "|---|---|---|---|---|"]
    for h in HTTP:
        where = {"intake": "intake", "dispatch": "dispatch", "feedback": "feedback", "smsgw": "SMS gateway"}
        entry = f"{where[h.service]} `{h.method} {h.path}`"
        named = f"`errors[].field` `{h.field}`" if h.field else f"detail: “{h.detail}”"
        answer = f"{h.status} problem+json, {named}"
        if h.stored_delta:
            answer = f"200, item 1 `code` 422 naming `{h.field}`"
        stored = f"no (`{h.stored}` unchanged)" if not h.stored_delta else f"the valid record only (`{h.stored}` +1)"
        rows.append(f"| {_cell(entry)} | {_cell(h.bad)} | {_cell(answer)} | {stored} | `test_http[{h.id}]` |")
    for c in CLI:
        command = " ".join(c.argv[:2])
        answer = f"exit {c.exit}, stderr matches `{c.says}`"
        rows.append(
            f"| `quanzu {command}` | {_cell(c.bad)} | {_cell(answer)} | no (`{c.stored}` unchanged) "
            f"| `test_cli[{c.id}]` |"
        )
    for topic, groups in CONSUMERS.items():
        consumers = ", ".join(f"{CONSUMING_SERVICE[g]} (`{g}`)" for g in groups)
        for kind, bad in POISON_KINDS.items():
            answer = (
                f"on `{dead_letter_topic(topic)}` once per group, `dlq.error` matches `{DLQ_ERROR[kind]}`; "
                "offsets committed past it; the next message of the partition handled"
            )
            stored = "no (no inbox row: the handler never ran)" if kind in ENVELOPES else "no"
            rows.append(
                f"| Kafka `{topic}` → {consumers} | {bad} | {_cell(answer)} | {stored} | `test_kafka[{topic}]` |"
            )
    return "\n".join(rows) + "\n"


def test_the_reliability_table_is_this_catalogue() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert TABLE_BEGIN in text and TABLE_END in text, f"{DOC} has no {TABLE_BEGIN} ... {TABLE_END} section"
    documented = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip("\n") + "\n"
    assert documented == table(), "docs/RELIABILITY.md's table differs: `python -m tests.integration.test_bad_input`"


def test_catalogue_ids_are_unique() -> None:
    ids = [h.id for h in HTTP] + [c.id for c in CLI]
    assert len(ids) == len(set(ids))


# ========================================================================================================= the world


@dataclass
class World:
    """What the bad requests aim at: an area with a slow policy, its team and station, a critical warning whose
    call and visit tasks are open and known to feedback, and the callers' credentials."""

    ids: dict[str, str]
    headers: dict[str, dict[str, str]]
    clients: dict[str, httpx.AsyncClient]
    db: asyncpg.Connection
    settings: CommonSettings
    smsgw: FastAPI | None = None

    def fill(self, value: Any) -> Any:
        if isinstance(value, str):
            for name, id_ in self.ids.items():
                value = value.replace(f"<{name}>", id_)
            return value
        if isinstance(value, bytes):  # only this module's own placeholders: the rest stays byte for byte
            for name, id_ in self.ids.items():
                value = value.replace(f"<{name}>".encode(), id_.encode())
            return value
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value

    async def snapshot(self, stored: str) -> Any:
        if stored == "smsgw":
            assert self.smsgw is not None
            state = self.smsgw.state.gateway
            return len(state.messages), state.control
        kind, _, ref = stored.partition(":")
        if kind == "task":
            query = (
                "SELECT status, acked_at, arrived_at, done_at, team_id, ack_misses FROM dispatch.tasks WHERE id = $1"
            )
            return tuple(await self.db.fetchrow(query, uuid.UUID(self.fill(ref))))
        if kind == "case":
            query = "SELECT state, area_code, closure, closed_at FROM dispatch.cases WHERE id = $1"
            return tuple(await self.db.fetchrow(query, uuid.UUID(self.fill(ref))))
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+", stored), stored
        return await self.db.fetchval(f"SELECT count(*) FROM {stored}")


async def open_tasks(world: World) -> dict[str, str]:
    """Post a critical warning in the world's area (a call and a visit at once) and wait until feedback knows both
    tasks; their ids, the case's and the warning's."""
    clients, headers = world.clients, world.headers
    record = warning_record(area_code=world.ids["area"], risk_level="critical")
    posted = await clients["intake"].post("/v1/warnings", json=record, headers=headers["source"])
    assert posted.status_code == 202, posted.text
    warning = posted.json()["id"]

    async def task(tier: str, caller: str) -> str | None:
        query = {"warning_id": warning, "tier": tier}
        response = await clients["dispatch"].get("/v1/tasks", params=query, headers=headers[caller])
        items = response.json()["items"]
        return str(items[0]["id"]) if items else None

    call = await wait_for(lambda: task("call", "operator"), timeout=120, message="the call task")
    visit = await wait_for(lambda: task("visit", "officer"), timeout=120, message="the visit task")

    async def known_to_feedback() -> bool:
        for task_id, caller in ((call, "operator"), (visit, "officer")):
            response = await clients["feedback"].get(
                "/v1/outcomes", params={"task_id": task_id}, headers=headers[caller]
            )
            if response.status_code != 200:
                return False
        return True

    await wait_for(known_to_feedback, timeout=120, message="feedback to learn the tasks")
    detail = await clients["dispatch"].get(f"/v1/tasks/{call}", headers=headers["operator"])
    return {"warning": warning, "call": call, "visit": visit, "case": detail.json()["case_id"]}


async def _logged_in(settings: CommonSettings, dispatch: httpx.AsyncClient, role: str, **where: str) -> dict[str, str]:
    """A member made as `quanzu member add` makes one, logged in through the real token endpoint."""
    username, password = f"bi-{role.replace('_', '')}-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    await admin.member_add(
        settings, username=username, name="测试", role=role, team=where.get("team"), station=where.get("station"),
        district=role == "admin", password=password,
    )  # fmt: skip
    login = {"grant_type": "password", "username": username, "password": password}
    response = await dispatch.post("/v1/auth/token", data=login)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def populate(settings: CommonSettings, clients: dict[str, httpx.AsyncClient], db: asyncpg.Connection) -> World:
    """An area of its own with a slow policy, its team, a source, a crime-report feed, the members, and a critical
    warning's open call and visit tasks."""
    suffix = uuid.uuid4().hex[:8]
    area, station, team = f"BI-{suffix}", f"坏输入派出所{suffix}", f"bad-input-team-{suffix}"
    registry = f"{AREAS_HEADER}{area},坏输入警务区,{station},坏输入街道,市南区\n"
    await admin.areas_import(settings, registry.encode())
    await admin.team_add(settings, team, area, backup=False)
    await admin.policy_set(settings, area, SLOW_POLICY)
    source_key = await admin.source_add(settings, f"bad-input-{suffix}", 10_000)
    feed_key = await admin.feed_add(settings, f"bad-input-{suffix}")
    headers = {
        "admin": await _logged_in(settings, clients["dispatch"], "admin"),
        "officer": await _logged_in(settings, clients["dispatch"], "officer", team=team),
        "operator": await _logged_in(settings, clients["dispatch"], "operator", station=station),
        "source": {"Authorization": f"Bearer {source_key}"}, "feed": {"X-API-Key": feed_key}, "none": {},
        "garbage": {"Authorization": "Bearer qz_not_a_key"},
        "forged": {"Authorization": "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"},
    }  # fmt: skip
    ids = {"area": area, "station": station, "team": team}
    world = World(ids, headers, clients, db, settings)
    ids |= await open_tasks(world)
    return world


@pytest.fixture(scope="module")
async def world(
    common_settings: CommonSettings, database_url: str, intake: AppClient, dispatch: AppClient, feedback: AppClient
) -> AsyncIterator[World]:
    """The session's services, in this process: a 500 would be the answer a real server sends."""
    smsgw = create_smsgw()  # a gateway of its own: the faults set here must not reach the session's
    apps = {"intake": intake.app, "dispatch": dispatch.app, "feedback": feedback.app, "smsgw": smsgw}
    async with contextlib.AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(lenient(app, name)) for name, app in apps.items()}
        db = await asyncpg.connect(asyncpg_dsn(database_url))
        stack.push_async_callback(db.close)
        world = await populate(common_settings, clients, db)
        world.smsgw = smsgw
        yield world


@pytest.fixture(scope="module")
async def system(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSystem]:
    """A whole Quanzu of its own (processes, database, broker) for the poison messages: they stay on its topics,
    where no other test reads them."""
    home = tmp_path_factory.mktemp("bad-input-system")
    async with LocalSystem(home=home, pg_admin_url=pg_admin_url, database=f"quanzu_bad_input_{os.getpid()}") as local:
        yield local


@pytest.fixture(scope="module")
async def kafka_world(system: LocalSystem) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(httpx.AsyncClient(base_url=system.url(name), timeout=30))
            for name in ("intake", "dispatch", "feedback")
        }
        db = await asyncpg.connect(asyncpg_dsn(system.database_url))
        stack.push_async_callback(db.close)
        yield await populate(system.settings, clients, db)


@contextlib.asynccontextmanager
async def lenient(app: FastAPI, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running app that sees an unhandled exception as the 500 a real server would send."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client:
        yield client


# ========================================================================================================= the tests


@pytest.mark.parametrize("case", HTTP, ids=[h.id for h in HTTP])
async def test_http(world: World, case: Http) -> None:
    before = await world.snapshot(case.stored)
    headers = {**world.headers[case.caller], **case.headers}
    if case.content_type:
        headers["content-type"] = case.content_type
    request: dict[str, Any] = {"headers": headers, "params": case.params}
    if case.content is not None:
        request["content"] = world.fill(case.content)
    elif case.form is not None:
        request["data"] = case.form
    elif case.json is not None:
        request["json"] = world.fill(case.json)
    response = await world.clients[case.service].request(case.method, world.fill(case.path), **request)

    assert response.status_code == case.status, response.text[:1000]
    if case.stored_delta:  # a batch: the answer is 200 with a result per record
        results = response.json()["results"]
        assert [r["code"] for r in results] == [202, 422], results
        assert case.field in [e["field"] for e in results[1]["errors"]], results
    else:
        assert response.headers["content-type"] == PROBLEM, response.headers
        problem = response.json()
        assert problem["status"] == case.status and problem["title"], problem
        assert problem["type"].startswith("https://quanzu.dev/problems/"), problem
        if case.field is not None:
            assert case.field in [e["field"] for e in problem["errors"]], problem
        else:
            assert case.detail in problem["detail"], problem
        assert "\x00" not in response.text
    after = await world.snapshot(case.stored)
    if case.stored_delta:
        assert after == before + case.stored_delta
    else:
        assert after == before, f"{case.stored} changed: {before} -> {after}"


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch, database_url: str, broker: Broker) -> None:
    """The command's configuration, as an operator's shell would give it (over any `.quanzu/env`)."""
    for name in [n for n in os.environ if n.startswith("QUANZU_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("QUANZU_DATABASE_URL", database_url)
    monkeypatch.setenv("QUANZU_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("QUANZU_SUBJECT_KEY_SECRET", SUBJECT_SECRET)


def _run(argv: list[str]) -> int:
    try:
        return quanzu(argv)
    except SystemExit as exit_:  # argparse refuses bad arguments by exiting 2
        return int(exit_.code or 0)


@pytest.mark.parametrize("case", CLI, ids=[c.id for c in CLI])
async def test_cli(
    world: World, case: Cli, cli_environment: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "input"
    if case.file is not None:
        path.write_bytes(case.file)
    argv = [world.fill(a.replace("{file}", str(path))) for a in case.argv]
    before = await world.snapshot(case.stored)
    code = await asyncio.to_thread(_run, argv)
    err = capsys.readouterr().err
    assert code == case.exit, err
    assert re.search(case.says, err), err
    assert "Traceback" not in err
    assert await world.snapshot(case.stored) == before


# --- Kafka ----------------------------------------------------------------------------------------------------------


def _poison(topic: str, token: str) -> dict[str, bytes]:
    """The five bad messages for `topic`, each unique to this run."""
    now = datetime.now(UTC)

    def envelope(type_: str, data: dict[str, Any], version: int = 1) -> bytes:
        return Envelope(
            id=uuid.uuid4(), type=type_, source="test_bad_input", time=now, schema_version=version, data=data
        ).to_bytes()

    valid: dict[str, tuple[str, dict[str, Any]]] = {
        Topic.WARNINGS_RECEIVED: (WarningReceivedV1.TYPE, WarningReceivedV1(
            warning_id=uuid.uuid4(), source="bad-input", external_id=token, issued_at=now, received_at=now,
            subject=SubjectData(phone=mobile()), subject_key=token, area_code=None, assigned=False,
            fraud_type="other", risk_level="low", in_progress=False, amount_at_risk=None, evidence={},
        ).model_dump(mode="json")),
        Topic.DISPATCH_EVENTS: (CaseOpenedV1.TYPE, CaseOpenedV1(
            case_id=uuid.uuid4(), warning_id=uuid.uuid4(), subject_key=token, source="bad-input", area_code=None,
            station=None, street=None, risk_level="low", fraud_type="other", in_progress=False, residency="unknown",
            rewarned=False, opened_at=now,
        ).model_dump(mode="json")),
        Topic.FEEDBACK_OUTCOMES: (OutcomeRecordedV1.TYPE, OutcomeRecordedV1(
            outcome_id=uuid.uuid4(), task_id=uuid.uuid4(), kind="call", call_result="no_answer", recorded_at=now,
        ).model_dump(mode="json")),
        Topic.REGISTRY_EVENTS: (AreaUpsertedV1.TYPE, AreaUpsertedV1(
            area_code=f"BI-{token[:8]}", area_name="坏", station="坏", street="坏", district="坏",
        ).model_dump(mode="json")),
    }  # fmt: skip
    type_, data = valid[topic]
    return {
        "undecodable": b"\xff\xfe not JSON " + token.encode(),
        "not-an-envelope": orjson.dumps({"type": type_, "token": token}),
        "unknown-type": envelope("bad-input.unheard-of", {"token": token}),
        "newer-version": envelope(type_, data, version=2),
        "invalid-payload": envelope(type_, {"token": token}),
    }


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)  # dead-letter topics have one partition
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list[Any] = []
        async for _, batch in read_to_end(consumer, [tp]):
            records += batch
        return records
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int:
    checker = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await checker.start()
    try:
        return await checker.committed(tp) or 0
    finally:
        await checker.stop()


@contextlib.asynccontextmanager
async def _producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(bootstrap, client_id="test-bad-input")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _next_message(topic: str, world: World, producer: AIOKafkaProducer) -> Any:
    """Send the next message of the poisoned partition and return a check that it was handled by every group."""
    db = world.db
    if topic == Topic.WARNINGS_RECEIVED:
        record = warning_record(area_code=world.ids["area"], subject={"phone": world.ids["next_phone"]})
        posted = await world.clients["intake"].post("/v1/warnings", json=record, headers=world.headers["source"])
        warning = uuid.UUID(posted.json()["id"])

        async def handled() -> bool:
            dispatched = await db.fetchval("SELECT count(*) FROM dispatch.case_warnings WHERE warning_id = $1", warning)
            seen = await db.fetchval("SELECT received_at FROM feedback.warnings WHERE warning_id = $1", warning)
            return bool(dispatched) and seen is not None

        return handled
    if topic == Topic.DISPATCH_EVENTS:
        data = TaskEscalatedV1(
            case_id=uuid.uuid4(), from_tier="call", to_tier="visit", reason="bad-input", at=datetime.now(UTC)
        )
        escalated = Envelope.new(TaskEscalatedV1.TYPE, "test_bad_input", data)
        await producer.send_and_wait(topic, escalated.to_bytes(), key=world.ids["next_key"].encode())

        async def skipped() -> bool:  # feedback has no use for it, and records that it handled it
            query = "SELECT count(*) FROM feedback.inbox WHERE consumer = $1 AND event_id = $2"
            return bool(await db.fetchval(query, DISPATCH_GROUP, escalated.id))

        return skipped
    if topic == Topic.FEEDBACK_OUTCOMES:
        body = {"task_id": world.ids["next_call"], "kind": "call", "call_result": "no_answer"}
        recorded = await world.clients["feedback"].post("/v1/outcomes", json=body, headers=world.headers["operator"])
        assert recorded.status_code == 201, recorded.text
        call = uuid.UUID(world.ids["next_call"])

        async def acted_on() -> bool:
            return await db.fetchval("SELECT done_at FROM dispatch.tasks WHERE id = $1", call) is not None

        return acted_on
    code = f"BI-NEXT-{uuid.uuid4().hex[:8]}"
    await admin.areas_import(world.settings, f"{AREAS_HEADER}{code},下一个,站,街,区\n".encode())

    async def copied() -> bool:
        known = await db.fetchval("SELECT count(*) FROM intake.areas WHERE area_code = $1", code)
        return bool(known) and bool(await db.fetchval("SELECT count(*) FROM feedback.areas WHERE area_code = $1", code))

    return copied


@pytest.mark.parametrize("topic", list(CONSUMERS))
async def test_kafka(kafka_world: World, system: LocalSystem, topic: str) -> None:
    """Every kind of poison message on `topic`, then a good one on the same partition: each poison message goes to
    `<topic>.dlq` once per consuming group, with the reason; the offsets move past them; the good one is handled."""
    world, bootstrap = kafka_world, system.kafka_bootstrap
    token = uuid.uuid4().hex
    # The key the next good message will have, so all land on one partition, behind the poison.
    if topic == Topic.WARNINGS_RECEIVED:
        world.ids["next_phone"] = mobile()
        secret = world.settings.subject_key_secret.get_secret_value()
        key = subject_key(secret, phone=world.ids["next_phone"], id_number=None)
    elif topic == Topic.FEEDBACK_OUTCOMES:
        fresh = await open_tasks(world)
        world.ids["next_call"], key = fresh["call"], fresh["case"]
    elif topic == Topic.DISPATCH_EVENTS:
        key = world.ids["next_key"] = f"bad-input-{token}"
    else:
        key = "any"  # one partition
    poison = _poison(topic, token)
    async with _producer(bootstrap) as producer:
        sent = {kind: await producer.send_and_wait(topic, value, key=key.encode()) for kind, value in poison.items()}
        handled = await _next_message(topic, world, producer)
        await wait_for(handled, timeout=120, message=f"the message after the poison on {topic}")

    [partition] = {meta.partition for meta in sent.values()}
    last = max(meta.offset for meta in sent.values())
    for group in CONSUMERS[topic]:
        tp = TopicPartition(topic, partition)
        await wait_for(lambda g=group, t=tp: _is_past(bootstrap, g, t, last), timeout=30, message=f"{group}'s commit")
    dead = [r for r in await _read_all(bootstrap, dead_letter_topic(topic)) if r.value in poison.values()]
    by_message = {(r.value, dict(r.headers)["dlq.group"].decode()): dict(r.headers) for r in dead}
    assert len(dead) == len(by_message), "a poison message was dead-lettered twice by one group"
    for kind, value in poison.items():
        for group in CONSUMERS[topic]:
            headers = by_message.get((value, group))
            assert headers is not None, f"{kind} not dead-lettered by {group}"
            assert re.match(DLQ_ERROR[kind], headers["dlq.error"].decode()), (kind, headers["dlq.error"])
            assert headers["dlq.topic"].decode() == topic
            assert int(headers["dlq.offset"]) == sent[kind].offset
    assert len(dead) == len(poison) * len(CONSUMERS[topic])
    for kind in ENVELOPES:  # the handlers never ran: no inbox row, so none of their effects either
        event_id = Envelope.model_validate_json(poison[kind]).id
        for group in CONSUMERS[topic]:
            query = f"SELECT count(*) FROM {CONSUMING_SERVICE[group]}.inbox WHERE consumer = $1 AND event_id = $2"
            assert await world.db.fetchval(query, group, event_id) == 0, (kind, group)


async def _is_past(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> bool:
    return await _committed(bootstrap, group, tp) > offset


if __name__ == "__main__":
    sys.stdout.write(table())
