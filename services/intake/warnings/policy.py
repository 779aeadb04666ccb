"""Rules of acceptance: pure functions over validated records."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from services.intake.warnings.models import WarningCreate


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


def canonical(record: WarningCreate) -> dict[str, Any]:
    """The normalised record as JSON values, without `source` (the API key says it): what is hashed and stored."""
    return record.model_dump(mode="json", exclude={"source"})


def digest(canonical_record: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(canonical_record, option=orjson.OPT_SORT_KEYS)).hexdigest()


def content_hash(record: WarningCreate) -> str:
    """What "the same content" means for idempotency: the normalised record, so `+86 138…` equals `138…`."""
    return digest(canonical(record))


_NUL_ESCAPE = b"\\u0000"


def may_hold_nul(item: Any) -> bool:
    """False when parsed JSON certainly holds no NUL character: JSON writes one only as the escape \\u0000, so a
    value whose serialisation lacks it has none. Far cheaper than walking every string to name the fields that do
    (`shared.problems.nul_fields`), which a batch would otherwise do for each of its records. A value nested too
    deep for orjson to write again may hold one."""
    try:
        return _NUL_ESCAPE in orjson.dumps(item)
    except orjson.JSONEncodeError:
        return True


def replay_verdict(stored_hash: str, new_hash: str) -> Verdict:
    return Verdict.DUPLICATE if stored_hash == new_hash else Verdict.CONFLICT


def record_errors(record: WarningCreate, *, source: str, now: datetime, max_skew: timedelta) -> list[dict[str, str]]:
    """Checks that need the caller or the clock, beyond the record's own shape."""
    errors = []
    if record.source is not None and record.source != source:
        errors.append({"field": "source", "message": f"does not match the API key's source {source!r}"})
    if record.issued_at > now + max_skew:
        errors.append({"field": "issued_at", "message": "is in the future"})
    return errors


def unassigned_detail(area_code: str | None) -> str:
    if area_code is None:
        return "No area_code: the case goes to the district's unassigned queue for a supervisor to assign."
    return f"area_code {area_code!r} is not in the area registry: the case goes to the district's unassigned queue."
