"""Property tests of every parser a client's input meets before it is stored or acted on.

The common property: for any input, a parser returns a value that satisfies its rules, or refuses with its own
error naming the field (ValueError, pydantic's ValidationError, InvalidQuery, a 422 Problem). Anything else — an
OverflowError, a RecursionError, a TypeError — would be a 500 at the HTTP entry point or a stuck partition at the
Kafka one. The examples are derandomized: a failure is reproducible.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import string
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from services.cli.main import _aware_datetime
from services.dispatch.areas.models import AreaCreate
from services.dispatch.areas.policy import COLUMNS, parse_areas_csv
from services.dispatch.cases.api import Assignment
from services.dispatch.members.models import MemberCreate
from services.dispatch.policies.policy import PolicyFile, PolicyValues, resolve
from services.dispatch.tasks.models import Arrival, Decline
from services.dispatch.teams.models import TeamCreate
from services.feedback.fraud_reports.models import FraudReportCreate
from services.feedback.outcomes.models import OutcomeCreate
from services.feedback.stats.policy import DIMENSIONS, MAX_WINDOW, PERIODS, InvalidQuery, Month, parse_group_by, window
from services.intake.sources.models import SourceCreate
from services.intake.warnings.models import BatchCreate, WarningCreate
from services.intake.warnings.policy import content_hash
from services.smsgw.main import ControlIn, MessageIn
from shared import events
from shared.events import TOPIC_EVENTS, Envelope, Topic, unreadable
from shared.idempotency import fingerprint
from shared.instants import OUT_OF_RANGE, in_utc
from shared.pagination import BIGINT_MAX, decode_cursor, encode_cursor, is_row_id
from shared.personal import normalize_id_number, normalize_phone
from shared.problems import NUL_MESSAGE, Problem, field_errors, nul_fields, nul_request_fields
from tests.factories import mobile, valid_id_number, warning_record

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)
#: The tests run for each request model: fewer examples each, the same coverage across them.
PER_MODEL = settings(PROPERTY, max_examples=60)
ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 21, 0, 15, tzinfo=UTC)

# --- strategies -----------------------------------------------------------------------------------------------

# Offsets up to a day either way, to the minute: enough to push the years 1 and 9999 out of UTC.
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
any_instants = st.builds(lambda dt, tz: dt.replace(tzinfo=tz), st.datetimes(), offsets)
# Text that parsers of times meet: ISO forms across the whole calendar and offsets, dates, and junk.
time_texts = st.one_of(
    any_instants.map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),
    st.dates().map(date.isoformat),
    st.text(alphabet=string.digits + "-:T+Z. ", max_size=30),
    st.text(max_size=12),
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    time_texts,
    st.sampled_from(["13800138000", "+86 138 0013 8000", valid_id_number(), "high", "call", "visit", "dissuaded"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def model_inputs(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's own field names (and sometimes others), holding any JSON values."""
    names = st.sampled_from(sorted(model.model_fields)) | st.text(max_size=10)
    return st.dictionaries(names, json_values, max_size=len(model.model_fields) + 2)


def refused_naming_fields(model: type[BaseModel], raw: Any) -> list[dict[str, str]]:
    """Validate `raw`; [] if valid, else the field errors, each naming a field (the HTTP answer's `errors`)."""
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        assert errors, exc
        for error in errors:
            assert error["field"], error
            assert error["message"], error
        return errors
    return []


# --- every request model ------------------------------------------------------------------------------------

REQUEST_MODELS: list[type[BaseModel]] = [
    WarningCreate, BatchCreate, SourceCreate, AreaCreate, TeamCreate, MemberCreate, PolicyFile, Arrival, Decline,
    Assignment, OutcomeCreate, FraudReportCreate, MessageIn, ControlIn,
]  # fmt: skip


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda m: m.__name__)
@PER_MODEL
@given(data=st.data())
def test_any_object_gives_the_model_or_errors_that_each_name_a_field(model: type[BaseModel], data: Any) -> None:
    refused_naming_fields(model, data.draw(model_inputs(model)))


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda m: m.__name__)
@PER_MODEL
@given(raw=json_values)
def test_any_json_value_gives_the_model_or_errors_that_each_name_a_field(model: type[BaseModel], raw: Any) -> None:
    refused_naming_fields(model, raw)


# --- time: every instant a client may send -------------------------------------------------------------------


@PROPERTY
@given(any_instants)
def test_in_utc_is_the_same_instant_or_says_it_has_no_utc_value(value: datetime) -> None:
    offset = value.utcoffset()
    assert offset is not None
    since_min = value.replace(tzinfo=None) - datetime.min - offset  # timedelta arithmetic cannot overflow here
    representable = timedelta(0) <= since_min <= datetime.max - datetime.min
    if representable:
        converted = in_utc(value)
        assert converted == value and converted.utcoffset() == timedelta(0)
    else:
        with pytest.raises(ValueError, match=OUT_OF_RANGE):
            in_utc(value)


@PROPERTY
@given(any_instants)
def test_a_warning_issued_at_any_instant_is_stored_in_utc_or_refused_on_issued_at(issued_at: datetime) -> None:
    errors = refused_naming_fields(WarningCreate, warning_record(issued_at=issued_at.isoformat()))
    if errors:
        assert [e["field"] for e in errors] == ["issued_at"]
    else:
        record = WarningCreate.model_validate(warning_record(issued_at=issued_at.isoformat()))
        assert record.issued_at == issued_at and record.issued_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("model", "field", "base"),
    [
        (FraudReportCreate, "reported_at", {"external_id": "x", "subject": {"phone": "13800138000"}}),
        (OutcomeCreate, "recorded_at", {"task_id": str(uuid.uuid4()), "kind": "sms"}),
    ],
)
@PROPERTY
@given(value=any_instants)
def test_a_client_time_is_kept_as_written_or_refused_naming_it(
    model: type[BaseModel], field: str, base: dict[str, Any], value: datetime
) -> None:
    errors = refused_naming_fields(model, {**base, field: value.isoformat()})
    try:
        in_utc(value)
    except ValueError:
        assert [e["field"] for e in errors] == [field]
    else:
        assert errors == []
        assert getattr(model.model_validate({**base, field: value.isoformat()}), field) == value


@PROPERTY
@given(time_texts, st.one_of(st.none(), time_texts))
def test_a_rates_window_is_non_empty_short_and_in_utc_or_refused_on_from_or_to(
    raw_from: str, raw_to: str | None
) -> None:
    try:
        start, end = window(raw_from, raw_to, ZONE, NOW)
    except InvalidQuery as exc:
        assert exc.field in ("from", "to")
        return
    assert start < end
    assert end - start <= MAX_WINDOW
    assert in_utc(start) == start and in_utc(end) == end


@PROPERTY
@given(
    st.one_of(
        st.text(max_size=10), st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(0, 9999), st.integers(0, 13))
    )
)
@example("2026-+1")
@example("2026- 1")
@example("２０２６-01")
def test_a_month_is_parsed_back_to_its_text_or_refused_on_month(raw: str) -> None:
    try:
        month = Month.parse(raw)
    except InvalidQuery as exc:
        assert exc.field == "month"
        return
    assert str(month) == raw
    start, end = month.window(ZONE)
    assert start < end


@PROPERTY
@given(st.lists(st.sampled_from([*DIMENSIONS, *PERIODS, "planet", "", " area"]), max_size=5).map(",".join))
def test_group_by_is_a_list_of_known_groupings_or_refused_on_group_by(raw: str) -> None:
    try:
        groups = parse_group_by(raw)
    except InvalidQuery as exc:
        assert exc.field == "group_by"
        return
    assert set(groups) <= {*DIMENSIONS, *PERIODS}
    assert len(set(groups)) == len(groups)
    assert sum(g in PERIODS for g in groups) <= 1


@PROPERTY
@given(time_texts)
def test_outbox_replay_since_is_an_aware_time_or_an_argument_error(raw: str) -> None:
    try:
        value = _aware_datetime(raw)
    except argparse.ArgumentTypeError as exc:
        assert raw in str(exc) or repr(raw) in str(exc)
        return
    assert value.tzinfo is not None


# --- personal data -------------------------------------------------------------------------------------------


@PROPERTY
@given(st.text(max_size=30))
def test_any_text_is_a_normalised_phone_or_a_value_error(raw: str) -> None:
    try:
        phone = normalize_phone(raw)
    except ValueError:
        return
    assert phone.isascii() and phone.isdigit()
    assert (len(phone) == 11 and phone[0] == "1") or (phone[0] == "0" and 10 <= len(phone) <= 12)
    assert normalize_phone(phone) == phone


@PROPERTY
@given(st.one_of(st.text(max_size=20), st.text(alphabet=string.digits + "Xx ", min_size=18, max_size=19)))
def test_any_text_is_a_valid_id_number_or_a_value_error(raw: str) -> None:
    try:
        id_number = normalize_id_number(raw)
    except ValueError:
        return
    assert len(id_number) == 18 and id_number[:17].isdigit() and id_number[17] in "0123456789X"
    assert normalize_id_number(id_number) == id_number


@PROPERTY
@given(st.text(alphabet=string.digits + "+- ()", min_size=7, max_size=20), st.sampled_from(["phone", "id_number"]))
def test_an_invalid_phone_or_id_number_is_never_echoed_in_the_errors(raw: str, name: str) -> None:
    subject = {"phone": mobile(), "id_number": valid_id_number(), name: raw}
    for model, body in (
        (WarningCreate, warning_record(subject=subject)),
        (FraudReportCreate, {"external_id": "x", "reported_at": NOW.isoformat(), "subject": subject}),
    ):
        errors = refused_naming_fields(model, body)
        assert raw.strip() not in str(errors)


@PROPERTY
@given(st.sampled_from(["", "+86 ", "86", "0086 ", "+86-"]), st.data())
def test_the_content_hash_is_the_same_for_every_written_form_of_the_phone(prefix: str, data: Any) -> None:
    phone = data.draw(st.builds(lambda n: f"1{n}", st.integers(3_000_000_000, 9_999_999_999).map(str)))
    record = warning_record()
    plain = WarningCreate.model_validate({**record, "subject": {**record["subject"], "phone": phone}})
    written = WarningCreate.model_validate({**record, "subject": {**record["subject"], "phone": prefix + phone}})
    assert content_hash(plain) == content_hash(written)


# --- the area registry CSV ------------------------------------------------------------------------------------

codes = st.from_regex(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,31}", fullmatch=True)
names = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s != ""
)


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([list(COLUMNS), *rows])
    return out.getvalue().encode()


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_give_rows_or_errors_each_naming_a_line_and_a_field(data: bytes) -> None:
    rows, errors = parse_areas_csv(data)
    for error in errors:
        assert error.line >= 0 and error.field and error.message
    assert len({r.area_code for r in rows}) == len(rows)


@PROPERTY
@given(
    st.lists(st.tuples(codes, names, names, names, names), min_size=1, max_size=8, unique_by=lambda r: r[0]),
    st.data(),
)
def test_a_nul_anywhere_in_a_file_is_an_error_at_its_line_and_column(rows: list[tuple[str, ...]], data: Any) -> None:
    at = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.integers(1, 4))  # any column but the code (whose pattern refuses a NUL anyway)
    broken = [list(r) for r in rows]
    broken[at][column] = broken[at][column] + "\x00"
    _, errors = parse_areas_csv(_csv(broken))
    assert [(e.line, e.field, e.message) for e in errors] == [(at + 2, COLUMNS[column], NUL_MESSAGE)]


# --- policy files ----------------------------------------------------------------------------------------------

settings_names = sorted(PolicyValues.model_fields)
risks = st.sampled_from(["low", "medium", "high", "critical"])


@PROPERTY
@given(
    st.dictionaries(st.sampled_from(settings_names), json_values, max_size=4),
    st.dictionaries(risks, st.dictionaries(st.sampled_from(settings_names), json_values, max_size=2), max_size=2),
)
def test_a_policy_file_resolves_at_every_risk_or_names_where_the_file_is_wrong(
    top: dict[str, Any], by_risk: dict[str, dict[str, Any]]
) -> None:
    raw = {**top, "by_risk": by_risk}
    errors = refused_naming_fields(PolicyFile, raw)
    if not errors:
        file = PolicyFile.model_validate(raw)
        for risk in ("low", "medium", "high", "critical"):
            resolve(PolicyValues(), file, risk)
        return
    for error in errors:
        head = error["field"].split(".")[0]
        assert head in top or head == "by_risk", (error, raw)


@PROPERTY
@given(
    risks,
    st.sampled_from(["call_attempts", "ack_within_s", "visit_arrive_within_s", "sms_within_s"]),
    st.one_of(st.integers(-100, -1), st.text(alphabet=string.ascii_letters, min_size=1, max_size=5)),
)
def test_a_bad_override_is_named_under_by_risk_not_as_the_top_level_setting(risk: str, setting: str, bad: Any) -> None:
    errors = refused_naming_fields(PolicyFile, {"by_risk": {risk: {setting: bad}}})
    assert [e["field"] for e in errors] == [f"by_risk.{risk}.{setting}"]


# --- pagination, idempotency, NUL characters -------------------------------------------------------------------


@PROPERTY
@given(st.text(max_size=80))
def test_a_cursor_decodes_to_what_was_encoded(value: str) -> None:
    assert decode_cursor(encode_cursor(value)) == value


@PROPERTY
@given(st.text(max_size=40))
def test_any_cursor_decodes_or_is_a_422_naming_cursor(cursor: str) -> None:
    try:
        decode_cursor(cursor)
    except Problem as problem:
        assert problem.status == 422
        assert problem.errors == [{"field": "cursor", "message": "is not a cursor this API gave out"}]


@PROPERTY
@given(st.one_of(st.integers(-5, 2**64).map(str), st.text(max_size=25)))
def test_a_row_id_cursor_is_exactly_an_ascii_number_postgres_can_hold(value: str) -> None:
    expected = value.isascii() and value.isdigit() and 0 <= int(value) <= BIGINT_MAX
    assert is_row_id(value) == expected


@PROPERTY
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.randoms(use_true_random=False))
def test_an_idempotency_fingerprint_ignores_key_order_and_tells_requests_apart(body: dict[str, Any], rng: Any) -> None:
    shuffled = list(body.items())
    rng.shuffle(shuffled)
    assert fingerprint("POST", "/v1/outcomes", body) == fingerprint("POST", "/v1/outcomes", dict(shuffled))
    assert fingerprint("POST", "/v1/outcomes", body) != fingerprint("POST", "/v1/tasks", body)


@st.composite
def with_nuls(draw: st.DrawFn) -> tuple[Any, set[str]]:
    """A JSON value with a NUL put into some of its strings, and the paths of those strings."""
    value = draw(json_values)
    paths: set[str] = set()

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, str):
            if draw(st.booleans()):
                paths.add(path or "(body)")
                return node + "\x00"
            return node.replace("\x00", "")
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(value, ""), paths


@PROPERTY
@given(with_nuls())
def test_nul_fields_names_exactly_the_strings_holding_a_nul(case: tuple[Any, set[str]]) -> None:
    value, paths = case
    assert set(nul_fields(value)) == paths


@PROPERTY
@given(st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=6), st.text(max_size=6))
def test_nul_request_fields_names_the_path_the_query_and_the_form(name: str, text: str) -> None:
    scope = {
        "path_params": {"username": f"{text}\x00", "other": text.replace("\x00", "")},
        "query_string": f"{name}=a%00&clean=b".encode(),
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }
    found = nul_request_fields(scope, f"password=x%00y&{name}_ok=z".encode())
    assert found == ["path.username", f"query.{name}", "password"]


# --- Kafka: which messages a consumer can read ------------------------------------------------------------------


envelope_like = st.fixed_dictionaries(
    {"id": st.uuids().map(str) | json_leaves, "type": json_leaves, "source": json_leaves, "time": time_texts},
    optional={"schema_version": json_leaves, "data": json_values, "subject": json_leaves},
)


def test_every_event_model_is_listed_on_its_topic_at_version_1() -> None:
    types = {model.TYPE for model in vars(events).values() if isinstance(model, type) and hasattr(model, "TYPE")}
    listed = {t for known in TOPIC_EVENTS.values() for t in known}
    assert listed == types
    assert set(TOPIC_EVENTS) == set(Topic)


@PROPERTY
@given(st.binary(max_size=200) | json_values.map(orjson.dumps) | envelope_like.map(orjson.dumps))
def test_any_bytes_are_an_envelope_or_a_validation_error(raw: bytes) -> None:
    """The consumer loop catches ValidationError alone: anything else would stop the partition."""
    with contextlib.suppress(ValidationError):
        Envelope.model_validate_json(raw)


@PROPERTY
@given(st.sampled_from(list(Topic)), st.text(min_size=1, max_size=30), st.integers(1, 5))
def test_an_envelope_is_readable_exactly_when_its_topic_carries_its_type_at_that_version(
    topic: Topic, type_: str, version: int
) -> None:
    known = TOPIC_EVENTS[topic]
    assume(type_ not in known)  # the known types are drawn below
    for candidate in (type_, *known):
        envelope = Envelope(id=uuid.uuid4(), type=candidate, source="test", time=NOW, schema_version=version, data={})
        reason = unreadable(topic, envelope)
        readable = candidate in known and version <= known[candidate]
        assert (reason is None) == readable, (candidate, version, reason)


@PROPERTY
@given(st.text(min_size=1, max_size=30), st.integers(1, 5))
def test_a_topic_the_registry_does_not_list_takes_any_type(type_: str, version: int) -> None:
    envelope = Envelope(id=uuid.uuid4(), type=type_, source="test", time=NOW, schema_version=version, data={})
    assert unreadable("test.some-topic", envelope) is None


# --- the SMS gateway's fault control --------------------------------------------------------------------------


@PROPERTY
@given(st.integers(-1000, 1000), st.floats(allow_nan=False, min_value=-2, max_value=2))
def test_the_gateway_fails_only_with_429_or_a_5xx_at_a_rate_between_0_and_1(status: int, rate: float) -> None:
    errors = refused_naming_fields(ControlIn, {"fail_status": status, "fail_rate": rate})
    bad_status = status != 429 and not 500 <= status <= 599
    bad_rate = not 0 <= rate <= 1
    assert {e["field"] for e in errors} == {
        f for f, bad in (("fail_status", bad_status), ("fail_rate", bad_rate)) if bad
    }
