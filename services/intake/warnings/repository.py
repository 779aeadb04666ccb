from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.warnings.models import Warning
from shared.events import Topic, WarningReceivedV1

# The record columns in the order `intake.store_warnings` takes them (migration intake_0003), after the source.
_COLUMNS = ("id", "external_id", "content_hash", "received_at", "issued_at", "area_code", "assigned", "fraud_type",
            "risk_level", "in_progress", "amount_at_risk", "subject_key", "subject", "evidence")  # fmt: skip
_JSON_COLUMNS = ("subject", "evidence")
# the scope's names and values and the source; the columns; the events' ids, type, topic, keys and values
_ARGS = 3 + len(_COLUMNS) + 5
_STORE = f"SELECT * FROM intake.store_warnings({', '.join(f'${n}' for n in range(1, _ARGS + 1))})"


@dataclass(frozen=True)
class Stored:
    inserted: set[uuid.UUID]
    #: external_id → (id, content_hash, assigned) of the records this source had already stored
    existing: dict[str, tuple[uuid.UUID, str, bool]]


async def store(
    pool: asyncpg.Pool[asyncpg.Record],
    scope: dict[str, str],
    source: str,
    rows: list[dict[str, Any]],
    events: list[tuple[uuid.UUID, bytes]],
) -> Stored:
    """Insert the rows whose (source, external_id) is new, each with its `warning.received` (`events[i]`, id and
    bytes, is `rows[i]`'s), in one statement that is its own transaction: committed when this returns. Arrays, one
    per column, are unnested in the database: one prepared statement whatever the number of rows, encoded by the
    driver."""
    if not rows:
        return Stored(set(), {})
    columns = [[row[c] for row in rows] for c in _COLUMNS]
    for c in _JSON_COLUMNS:
        i = _COLUMNS.index(c)
        columns[i] = [orjson.dumps(value).decode() for value in columns[i]]
    records = await pool.fetch(
        _STORE,
        list(scope), list(scope.values()), source, *columns,
        [event_id for event_id, _ in events], WarningReceivedV1.TYPE, Topic.WARNINGS_RECEIVED.value,
        [row["subject_key"].encode() for row in rows], [value for _, value in events],
    )  # fmt: skip
    stored = Stored(set(), {})
    for r in records:
        if r["inserted"]:
            stored.inserted.add(r["stored_id"])
        else:
            stored.existing[r["stored_external_id"]] = (r["stored_id"], r["stored_hash"], r["stored_assigned"])
    return stored


async def get(session: AsyncSession, warning_id: uuid.UUID) -> Warning | None:
    return await session.get(Warning, warning_id)


async def erase_subjects(session: AsyncSession, older_than_days: int) -> int:
    conn = await session.connection()
    result = await conn.execute(
        text(
            """UPDATE intake.warnings
               SET subject = jsonb_build_object('residency', subject->'residency', 'erased', true), subject_key = ''
               WHERE received_at < now() - make_interval(days => :days) AND NOT subject ? 'erased'"""
        ),
        {"days": older_than_days},
    )
    return int(result.rowcount or 0)
