"""Logging for every process: one line per record, with anything shaped like a phone or ID number masked.

No code path should log personal data; the filter is the second line of defence for the ones that slip
(a library echoing a value, an exception message quoting input).
"""

from __future__ import annotations

import logging
import re

# An 18-character resident ID (17 digits + digit/X), or a mainland mobile / fixed line with area code,
# not glued to other digits (so ids, ports and timestamps are left alone).
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{2})\d{14}([\dXx]{2})(?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?(1[3-9]\d|0\d{2,3})[ -]?\d{3,4}[ -]?(\d{4})(?!\d)")


def mask_personal(text: str) -> str:
    text = _ID_NUMBER.sub(lambda m: m.group(1) + "*" * 14 + m.group(2), text)
    return _PHONE.sub(lambda m: m.group(1) + "****" + m.group(2), text)


class PersonalDataFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_personal(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = mask_personal(logging.Formatter().formatException(record.exc_info))
        return True


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if getattr(root, "_quanzu_configured", False):
        root.setLevel(level)
        return
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        handler.addFilter(PersonalDataFilter())
    # aiokafka logs every failed reconnect at ERROR while the broker is down; our own code reports that once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    root._quanzu_configured = True  # type: ignore[attr-defined]
