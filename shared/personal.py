"""Personal data of subjects: normalisation, validation, masking and keyed hashing. Pure functions."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date
from typing import Any, overload

_SEPARATORS = re.compile(r"[\s\-()]")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def normalize_phone(raw: str) -> str:
    """A mainland mobile (11 digits from 1) or a fixed line with its area code (0 + 9-11 digits).

    `+86`/`86`/`0086` prefixes, spaces, dashes and parentheses are accepted; the result is digits only.
    In the international form a fixed line drops its trunk 0 (+86 10 …, +86 532 …); it is put back.
    Raises ValueError with a message fit for the caller.
    """
    text = _SEPARATORS.sub("", raw)
    international = False
    if text.startswith("+"):
        if not text.startswith("+86"):
            raise ValueError("only mainland China numbers (+86) are accepted")
        text, international = text[3:], True
    elif text.startswith("0086"):
        text, international = text[4:], True
    elif text.startswith("86") and len(text) >= 11 and not _is_mobile(text):
        text, international = text[2:], True
    if not text.isdigit() or not text.isascii():
        raise ValueError("must contain only digits, spaces, dashes and an optional +86 prefix")
    if _is_mobile(text):
        return text
    if international and not text.startswith("0"):
        text = "0" + text
    if text.startswith("0") and text[1:2] != "0" and 10 <= len(text) <= 12:
        return text
    raise ValueError("is neither an 11-digit mobile number starting with 1 nor a fixed-line number with area code")


def _is_mobile(digits: str) -> bool:
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


def id_check_digit(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def normalize_id_number(raw: str, *, today: date | None = None) -> str:
    """An 18-character resident ID with a possible birth date and a valid ISO 7064 MOD 11-2 check digit."""
    text = raw.strip().upper()
    if len(text) != 18:
        raise ValueError("must be 18 characters")
    if not (text[:17].isascii() and text[:17].isdigit()) or text[17] not in "0123456789X":
        raise ValueError("must be 17 digits followed by a digit or X")
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        raise ValueError("contains an impossible birth date") from None
    if born.year < 1900 or born > (today or date.today()):
        raise ValueError("contains an impossible birth date")
    if id_check_digit(text[:17]) != text[17]:
        raise ValueError("check digit is wrong")
    return text


@overload
def mask_phone(phone: str) -> str: ...
@overload
def mask_phone(phone: None) -> None: ...
def mask_phone(phone: str | None) -> str | None:
    """138****8000: enough to recognise a number in a list, not enough to call it."""
    if not phone:
        return phone
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    if not name:
        return name
    return name[0] + "*" * max(len(name) - 1, 1)


def mask_id_number(id_number: str | None) -> str | None:
    if not id_number:
        return id_number
    if len(id_number) <= 4:
        return "*" * len(id_number)
    return id_number[:2] + "*" * (len(id_number) - 4) + id_number[-2:]


def mask_address(address: str | None) -> str | None:
    if not address:
        return address
    return address[: min(2, len(address))] + "****"


def mask_subject(subject: dict[str, Any]) -> dict[str, Any]:
    """A subject as lists, logs and non-admin readers see it."""
    return {
        **subject,
        "phone": mask_phone(subject.get("phone")),
        "name": mask_name(subject.get("name")),
        "id_number": mask_id_number(subject.get("id_number")),
        "address": mask_address(subject.get("address")),
    }


def subject_key(secret: str, *, phone: str | None, id_number: str | None) -> str:
    """The Kafka key and matching key of a subject: a keyed hash of the phone, else the ID number.

    Keyed (HMAC) because a plain hash of a phone number is reversed by trying all 10^10 of them.
    """
    value = f"phone:{phone}" if phone else f"id:{id_number}"
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]
