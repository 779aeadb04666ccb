"""Valid records to start tests from; tests change what they test."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.personal import id_check_digit


def valid_id_number(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    first17 = (
        f"110101{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    )
    return first17 + id_check_digit(first17)


def mobile(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    return f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"


def warning_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "external_id": f"T-{uuid.uuid4().hex}",
        "issued_at": datetime.now(UTC).isoformat(),
        "subject": {
            "phone": mobile(),
            "name": "张三",
            "id_number": valid_id_number(),
            "address": "XX路12号",
            "residency": "resident",
        },
        "area_code": "370202-012",
        "fraud_type": "investment",
        "risk_level": "high",
        "in_progress": False,
        "amount_at_risk": 50000.0,
        "evidence": {"suspect_numbers": [], "accounts": [], "urls": [], "apps": []},
    }
    record.update(overrides)
    return record
