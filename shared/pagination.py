"""Cursor pagination as the contract has it: `limit` (default 50, at most 500) and an opaque `cursor`."""

from __future__ import annotations

import base64
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from shared.problems import Problem, validation_problem

T = TypeVar("T")
BIGINT_MAX = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise bad_cursor() from None


def is_row_id(value: str) -> bool:
    """A cursor's bigint row id: ASCII digits only (str.isdigit also takes "²", which int() refuses) and in range."""
    return value.isascii() and value.isdigit() and int(value) <= BIGINT_MAX


def bad_cursor() -> Problem:
    return validation_problem(
        [{"field": "cursor", "message": "is not a cursor this API gave out"}],
        "The cursor is not one this API gave out.",
    )
