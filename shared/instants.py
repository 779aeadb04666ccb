"""Instants clients send: a date-time must also exist in UTC, where it is compared and stored.

Python's datetime ends at the years 1 and 9999 in every offset, so `0001-01-01T00:00:00+14:00` parses but has no
UTC value: converting it (to compare it, or for the database driver to encode it) raises OverflowError, which
would surface as a 500 instead of a validation error naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

OUT_OF_RANGE = "is outside the years 1 to 9999 once converted to UTC"


def in_utc(value: datetime) -> datetime:
    """`value` in UTC; ValueError (a validation error in a pydantic validator) if it has no UTC value.

    A naive value is taken as it is written, as the database driver takes it.
    """
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None


def _representable(value: datetime) -> datetime:
    in_utc(value)
    return value


#: An aware date-time that exists in UTC, kept in the offset it was written in.
Instant = Annotated[AwareDatetime, AfterValidator(_representable)]
#: A date-time (aware or naive) that, if aware, exists in UTC: for query parameters that accept both.
QueryInstant = Annotated[datetime, AfterValidator(_representable)]
