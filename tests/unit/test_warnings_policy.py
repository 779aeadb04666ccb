"""services.intake.warnings: the record's validation (contract §1) and the rules of acceptance."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake.warnings.models import WarningCreate
from services.intake.warnings.policy import Verdict, content_hash, record_errors, replay_verdict
from shared.problems import field_errors
from tests.factories import mobile, valid_id_number, warning_record

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)

KNOWN_ID = "110101199003078515"
ISSUED_AT = "2026-11-21T08:15:00+08:00"
NOW = datetime(2026, 11, 21, 0, 15, tzinfo=UTC)  # the same instant as ISSUED_AT
SKEW = timedelta(minutes=5)

CONTRACT_FRAUD_TYPES = [
    "task_rebate",
    "investment",
    "loan",
    "customer_service",
    "impersonate_officials",
    "impersonate_acquaintance",
    "romance",
    "game_trade",
    "other",
]
CONTRACT_RISK_LEVELS = ["low", "medium", "high", "critical"]
CONTRACT_RESIDENCIES = ["resident", "worker", "transit", "unknown"]


def _subject(**overrides: Any) -> dict[str, Any]:
    subject: dict[str, Any] = {
        "phone": "13800138000",
        "name": "张三",
        "id_number": KNOWN_ID,
        "address": "XX路12号",
        "residency": "resident",
    }
    subject.update(overrides)
    return subject


def _record(subject: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """The contract's example record, fixed so two calls give equal content."""
    base = warning_record(external_id="BF-20261121-000123", issued_at=ISSUED_AT, subject=subject or _subject())
    base.update(overrides)
    return base


def _create(subject: dict[str, Any] | None = None, **overrides: Any) -> WarningCreate:
    return WarningCreate.model_validate(_record(subject, **overrides))


def _invalid(record: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        WarningCreate.model_validate(record)
    return field_errors(info.value)


def _fields(record: dict[str, Any]) -> list[str]:
    return [e["field"] for e in _invalid(record)]


# --------------------------------------------------------------------------- WarningCreate


def test_the_contract_example_record_is_valid() -> None:
    record = _create()
    assert record.external_id == "BF-20261121-000123"
    assert record.subject.phone == "13800138000"
    assert record.subject.id_number == KNOWN_ID
    assert record.subject.residency == "resident"
    assert record.issued_at == NOW
    assert record.area_code == "370202-012"
    assert record.fraud_type == "investment"
    assert record.risk_level == "high"
    assert record.amount_at_risk == 50000.0
    assert record.source is None


def test_factory_records_are_valid() -> None:
    rng = random.Random(42)
    for _ in range(50):
        subject = _subject(phone=mobile(rng), id_number=valid_id_number(rng))
        record = WarningCreate.model_validate(warning_record(subject=subject))
        assert record.subject.phone == subject["phone"]
        assert record.subject.id_number == subject["id_number"]


def test_the_subject_phone_is_normalised() -> None:
    assert _create(_subject(phone="+86 138-0013-8000")).subject.phone == "13800138000"


def test_a_lowercase_x_in_the_id_number_is_normalised() -> None:
    assert _create(_subject(id_number="11010519491231002x")).subject.id_number == "11010519491231002X"


@pytest.mark.parametrize(
    "subject",
    [
        {"name": "张三", "residency": "resident"},
        {"phone": None, "id_number": None},
        {"phone": "", "id_number": ""},
        {"phone": "   ", "id_number": "  "},
    ],
    ids=["absent", "null", "empty", "blank"],
)
def test_a_subject_without_phone_and_id_number_is_rejected_saying_one_is_required(subject: dict[str, Any]) -> None:
    errors = _invalid(_record(subject))
    assert len(errors) == 1
    assert errors[0]["field"] == "subject"
    assert "at least one of subject.phone and subject.id_number is required" in errors[0]["message"]


def test_a_subject_with_only_a_phone_is_valid() -> None:
    record = _create({"phone": "13800138000"})
    assert record.subject.phone == "13800138000"
    assert record.subject.id_number is None
    assert record.subject.residency == "unknown"


def test_a_subject_with_only_an_id_number_is_valid() -> None:
    record = _create({"id_number": KNOWN_ID})
    assert record.subject.id_number == KNOWN_ID
    assert record.subject.phone is None


def test_a_missing_subject_is_an_error_on_subject() -> None:
    record = _record()
    del record["subject"]
    assert _fields(record) == ["subject"]


@pytest.mark.parametrize("phone", ["12345", "+1 415 555 0100", "138001380OO", "0012345678"])
def test_an_invalid_phone_is_an_error_on_subject_phone(phone: str) -> None:
    assert _fields(_record(_subject(phone=phone))) == ["subject.phone"]


@pytest.mark.parametrize(
    "id_number",
    [
        "110101199003078514",  # wrong check digit
        "11010119900307851",  # 17 characters
        "11010119900230851X",  # 30 February
        "1101011990030785AB",
    ],
)
def test_an_invalid_id_number_is_an_error_on_subject_id_number_without_echoing_it(id_number: str) -> None:
    errors = _invalid(_record(_subject(id_number=id_number)))
    assert [e["field"] for e in errors] == ["subject.id_number"]
    assert id_number not in errors[0]["message"]
    assert id_number[6:14] not in errors[0]["message"]
    assert not errors[0]["message"].startswith("Value error")


def test_an_invalid_phone_error_does_not_echo_the_number() -> None:
    errors = _invalid(_record(_subject(phone="19912345")))
    assert errors[0]["field"] == "subject.phone"
    assert "19912345" not in errors[0]["message"]


@pytest.mark.parametrize("fraud_type", CONTRACT_FRAUD_TYPES)
def test_every_contract_fraud_type_is_accepted(fraud_type: str) -> None:
    assert _create(fraud_type=fraud_type).fraud_type == fraud_type


@pytest.mark.parametrize("risk_level", CONTRACT_RISK_LEVELS)
def test_every_contract_risk_level_is_accepted(risk_level: str) -> None:
    assert _create(risk_level=risk_level).risk_level == risk_level


@pytest.mark.parametrize("residency", CONTRACT_RESIDENCIES)
def test_every_contract_residency_is_accepted(residency: str) -> None:
    assert _create(_subject(residency=residency)).subject.residency == residency


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("fraud_type", "phishing", "fraud_type"),
        ("fraud_type", "Investment", "fraud_type"),
        ("fraud_type", None, "fraud_type"),
        ("risk_level", "severe", "risk_level"),
        ("risk_level", "HIGH", "risk_level"),
        ("risk_level", 3, "risk_level"),
    ],
)
def test_a_value_outside_an_enum_is_an_error_on_that_field(field: str, value: object, path: str) -> None:
    record = _record()
    record[field] = value
    assert _fields(record) == [path]


@pytest.mark.parametrize("residency", ["tourist", "", "Resident"])
def test_a_residency_outside_the_enum_is_an_error_on_subject_residency(residency: str) -> None:
    assert _fields(_record(_subject(residency=residency))) == ["subject.residency"]


@pytest.mark.parametrize(
    "issued_at",
    ["2026-11-21T08:15:00", datetime(2026, 11, 21, 8, 15), "2026-11-21 08:15"],
    ids=["naive-string", "naive-datetime", "naive-space"],
)
def test_a_naive_issued_at_is_rejected(issued_at: object) -> None:
    assert _fields(_record(issued_at=issued_at)) == ["issued_at"]


@pytest.mark.parametrize("issued_at", ["yesterday", "", None, "2026-02-30T08:15:00Z"])
def test_an_unparseable_issued_at_is_rejected(issued_at: object) -> None:
    assert _fields(_record(issued_at=issued_at)) == ["issued_at"]


@pytest.mark.parametrize(
    "issued_at",
    [
        "2026-11-21T00:15:00Z",
        "2026-11-21T00:15:00+00:00",
        datetime(2026, 11, 21, 8, 15, tzinfo=timezone(timedelta(hours=8))),
    ],
)
def test_an_aware_issued_at_is_accepted_in_any_offset(issued_at: object) -> None:
    assert _create(issued_at=issued_at).issued_at == NOW


@pytest.mark.parametrize("amount", [-0.01, -1, -50000.0])
def test_a_negative_amount_at_risk_is_rejected(amount: float) -> None:
    assert _fields(_record(amount_at_risk=amount)) == ["amount_at_risk"]


@pytest.mark.parametrize("amount", [0, 0.0, 1e12, None])
def test_a_zero_huge_or_absent_amount_at_risk_is_accepted(amount: float | None) -> None:
    assert _create(amount_at_risk=amount).amount_at_risk == amount


@pytest.mark.parametrize("area_code", ["", "   ", None])
def test_a_blank_area_code_becomes_none(area_code: str | None) -> None:
    assert _create(area_code=area_code).area_code is None


def test_a_missing_area_code_is_none_not_an_error() -> None:
    record = _record()
    del record["area_code"]
    assert WarningCreate.model_validate(record).area_code is None


def test_an_area_code_is_stripped() -> None:
    assert _create(area_code=" 370202-012 ").area_code == "370202-012"


@pytest.mark.parametrize("external_id", ["", "   ", "x" * 129])
def test_an_empty_or_overlong_external_id_is_rejected(external_id: str) -> None:
    assert _fields(_record(external_id=external_id)) == ["external_id"]


def test_an_external_id_of_128_characters_is_accepted() -> None:
    assert _create(external_id="x" * 128).external_id == "x" * 128


def test_a_missing_external_id_is_an_error_on_external_id() -> None:
    record = _record()
    del record["external_id"]
    assert _fields(record) == ["external_id"]


def test_unknown_fields_are_ignored() -> None:
    record = _create(unknown="x", subject=_subject(nickname="三儿"))
    assert not hasattr(record, "unknown")
    assert "nickname" not in record.subject.model_dump()


def test_in_progress_defaults_to_false_and_evidence_to_empty_lists() -> None:
    record = _record()
    del record["in_progress"]
    del record["evidence"]
    created = WarningCreate.model_validate(record)
    assert created.in_progress is False
    assert created.evidence.model_dump() == {"suspect_numbers": [], "accounts": [], "urls": [], "apps": []}


def test_every_invalid_field_is_reported_at_once() -> None:
    record = _record(
        _subject(phone="12", id_number="123"),
        fraud_type="nope",
        risk_level="nope",
        amount_at_risk=-1,
        issued_at="2026-11-21T08:15:00",
    )
    assert sorted(_fields(record)) == sorted(
        ["subject.phone", "subject.id_number", "fraud_type", "risk_level", "amount_at_risk", "issued_at"]
    )


# --------------------------------------------------------------------------- content_hash and replay_verdict


def test_content_hash_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", content_hash(_create()))


def test_content_hash_is_equal_for_records_that_differ_only_in_phone_formatting() -> None:
    plain = _create(_subject(phone="13800138000"))
    formatted = _create(_subject(phone="+86 138-0013-8000"))
    assert content_hash(plain) == content_hash(formatted)


@pytest.mark.parametrize(
    "written", ["+86 13800138000", "86 138 0013 8000", "0086-138-0013-8000", "(+86) 138 0013 8000"]
)
def test_content_hash_is_equal_for_every_written_form_of_the_phone(written: str) -> None:
    assert content_hash(_create(_subject(phone=written))) == content_hash(_create())


def test_content_hash_is_equal_for_a_lowercase_x_id_number() -> None:
    upper = _create(_subject(id_number="11010519491231002X"))
    lower = _create(_subject(id_number="11010519491231002x"))
    assert content_hash(upper) == content_hash(lower)


def test_content_hash_ignores_surrounding_whitespace_unknown_fields_and_key_order() -> None:
    messy = {
        "evidence": {"apps": [], "urls": [], "accounts": [], "suspect_numbers": []},
        "risk_level": "high",
        "unknown": 1,
        **{k: v for k, v in _record().items() if k not in ("evidence", "risk_level")},
        "subject": {**_subject(name=" 张三 ", address="XX路12号  "), "extra": "x"},
        "area_code": "370202-012 ",
    }
    assert content_hash(WarningCreate.model_validate(messy)) == content_hash(_create())


def test_content_hash_ignores_the_source() -> None:
    # The source comes from the API key; a record naming it or not is the same content.
    assert content_hash(_create(source="bank-a")) == content_hash(_create())


@pytest.mark.parametrize(
    ("risk_level", "other"),
    [(a, b) for a in CONTRACT_RISK_LEVELS for b in CONTRACT_RISK_LEVELS if a != b],
)
def test_content_hash_differs_when_the_risk_level_differs(risk_level: str, other: str) -> None:
    assert content_hash(_create(risk_level=risk_level)) != content_hash(_create(risk_level=other))


@pytest.mark.parametrize(
    "change",
    [
        {"fraud_type": "loan"},
        {"in_progress": True},
        {"amount_at_risk": 50001.0},
        {"amount_at_risk": None},
        {"area_code": "370202-011"},
        {"area_code": None},
        {"issued_at": "2026-11-21T08:16:00+08:00"},
        {"external_id": "BF-20261121-000124"},
        {"evidence": {"suspect_numbers": ["17000000000"], "accounts": [], "urls": [], "apps": []}},
        {"subject": _subject(phone="13800138001")},
        {"subject": _subject(name="李四")},
        {"subject": _subject(id_number=None)},
        {"subject": _subject(address=None)},
        {"subject": _subject(residency="worker")},
    ],
    ids=lambda change: next(iter(change)),
)
def test_content_hash_differs_when_any_content_field_differs(change: dict[str, Any]) -> None:
    assert content_hash(_create(**change)) != content_hash(_create())


@PROPERTY
@given(st.builds(lambda second, rest: f"1{second}{rest:09d}", st.sampled_from("3456789"), st.integers(0, 999_999_999)))
def test_content_hash_is_the_same_for_a_mobile_with_and_without_plus_86(phone: str) -> None:
    spaced = f"+86 {phone[:3]} {phone[3:7]}-{phone[7:]}"
    assert content_hash(_create(_subject(phone=spaced))) == content_hash(_create(_subject(phone=phone)))


def test_the_same_hash_replayed_is_a_duplicate() -> None:
    stored = content_hash(_create())
    again = content_hash(_create(_subject(phone="+86 138-0013-8000")))
    assert replay_verdict(stored, again) is Verdict.DUPLICATE


def test_a_different_hash_replayed_is_a_conflict() -> None:
    stored = content_hash(_create())
    changed = content_hash(_create(risk_level="critical"))
    assert replay_verdict(stored, changed) is Verdict.CONFLICT


@PROPERTY
@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), st.text(max_size=64))
def test_replay_verdict_is_duplicate_exactly_when_the_hashes_are_equal(stored: str, new: str) -> None:
    assert replay_verdict(stored, stored) is Verdict.DUPLICATE
    expected = Verdict.DUPLICATE if new == stored else Verdict.CONFLICT
    assert replay_verdict(stored, new) is expected


def test_verdicts_are_the_status_strings() -> None:
    assert [v.value for v in Verdict] == ["accepted", "duplicate", "conflict"]


# --------------------------------------------------------------------------- record_errors


def test_a_record_without_source_is_accepted_for_any_source() -> None:
    assert record_errors(_create(), source="bank-a", now=NOW, max_skew=SKEW) == []


def test_a_record_naming_the_keys_own_source_is_accepted() -> None:
    assert record_errors(_create(source="bank-a"), source="bank-a", now=NOW, max_skew=SKEW) == []


def test_a_record_naming_another_source_is_an_error_on_source() -> None:
    errors = record_errors(_create(source="bank-b"), source="bank-a", now=NOW, max_skew=SKEW)
    assert [e["field"] for e in errors] == ["source"]
    assert "bank-a" in errors[0]["message"]


def test_a_source_differing_only_in_case_is_a_mismatch() -> None:
    errors = record_errors(_create(source="Bank-A"), source="bank-a", now=NOW, max_skew=SKEW)
    assert [e["field"] for e in errors] == ["source"]


def test_an_issued_at_beyond_the_skew_is_an_error_on_issued_at() -> None:
    future = (NOW + SKEW + timedelta(seconds=1)).isoformat()
    errors = record_errors(_create(issued_at=future), source="bank-a", now=NOW, max_skew=SKEW)
    assert [e["field"] for e in errors] == ["issued_at"]
    assert "future" in errors[0]["message"]


def test_an_issued_at_one_microsecond_beyond_the_skew_is_an_error() -> None:
    future = (NOW + SKEW + timedelta(microseconds=1)).isoformat()
    errors = record_errors(_create(issued_at=future), source="bank-a", now=NOW, max_skew=SKEW)
    assert [e["field"] for e in errors] == ["issued_at"]


@pytest.mark.parametrize(
    "issued_at",
    [NOW + SKEW, NOW + timedelta(seconds=1), NOW, NOW - timedelta(days=365)],
    ids=["at-the-skew", "slightly-ahead", "now", "a-year-ago"],
)
def test_an_issued_at_within_the_skew_or_in_the_past_is_accepted(issued_at: datetime) -> None:
    record = _create(issued_at=issued_at.isoformat())
    assert record_errors(record, source="bank-a", now=NOW, max_skew=SKEW) == []


def test_the_skew_compares_instants_not_wall_clock_times() -> None:
    # 08:15+08:00 is 00:15Z: 10 minutes ahead of a 00:05Z clock, so beyond a 5-minute skew.
    record = _create(issued_at="2026-11-21T08:15:00+08:00")
    assert record_errors(record, source="s", now=datetime(2026, 11, 21, 0, 5, tzinfo=UTC), max_skew=SKEW) != []
    assert record_errors(record, source="s", now=datetime(2026, 11, 21, 0, 10, tzinfo=UTC), max_skew=SKEW) == []


def test_a_wrong_source_and_a_future_issued_at_are_both_reported() -> None:
    record = _create(source="bank-b", issued_at=(NOW + timedelta(hours=1)).isoformat())
    errors = record_errors(record, source="bank-a", now=NOW, max_skew=SKEW)
    assert sorted(e["field"] for e in errors) == ["issued_at", "source"]


@PROPERTY
@given(st.integers(-86_400, 86_400), st.integers(0, 3600))
def test_issued_at_is_an_error_exactly_when_it_is_after_now_plus_skew(offset_s: int, skew_s: int) -> None:
    record = _create(issued_at=(NOW + timedelta(seconds=offset_s)).isoformat())
    errors = record_errors(record, source="s", now=NOW, max_skew=timedelta(seconds=skew_s))
    assert [e["field"] for e in errors] == (["issued_at"] if offset_s > skew_s else [])


def test_the_same_instant_written_with_another_offset_has_the_same_content_hash() -> None:
    shanghai = _create(issued_at="2026-11-21T08:15:00+08:00")
    utc = _create(issued_at="2026-11-21T00:15:00Z")
    assert content_hash(shanghai) == content_hash(utc)
    assert content_hash(shanghai) != content_hash(_create(issued_at="2026-11-21T08:15:00Z"))
