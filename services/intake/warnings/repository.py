from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import text, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.warnings.models import Warning

# (column, its PostgreSQL type) in the order of the insert below
_COLUMNS = (
    ("id", "uuid"), ("source", "text"), ("external_id", "text"), ("content_hash", "text"),
    ("received_at", "timestamptz"), ("issued_at", "timestamptz"), ("area_code", "text"), ("assigned", "boolean"),
    ("fraud_type", "text"), ("risk_level", "text"), ("in_progress", "boolean"), ("amount_at_risk", "float8"),
    ("subject_key", "text"), ("subject", "jsonb"), ("evidence", "jsonb"),
)  # fmt: skip
_JSON_COLUMNS = ("subject", "evidence")
# One array per column, unnested into rows: one statement (and one prepared plan) whatever the number of rows, the
# arrays encoded by the driver. As a multi-row INSERT ... VALUES the ORM bound a batch's 15,000 parameters one by one
# in Python, which took twice the client CPU this does.
_INSERT_NEW = text(
    f"INSERT INTO intake.warnings ({', '.join(c for c, _ in _COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in _COLUMNS)}) "
    "ON CONFLICT (source, external_id) DO NOTHING RETURNING id"
)


async def insert_new(session: AsyncSession, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert the rows whose (source, external_id) is new; returns the ids actually inserted."""
    if not rows:
        return set()
    columns: dict[str, list[Any]] = {c: [row[c] for row in rows] for c, _ in _COLUMNS}
    for c in _JSON_COLUMNS:
        columns[c] = [orjson.dumps(value).decode() for value in columns[c]]
    conn = await session.connection()
    result = await conn.execute(_INSERT_NEW, columns)
    return {row[0] for row in result.all()}


async def find_existing(
    session: AsyncSession, source: str, external_ids: list[str]
) -> dict[str, tuple[uuid.UUID, str, bool]]:
    """external_id → (id, content_hash, assigned) of the records this source already stored."""
    if not external_ids:
        return {}
    stmt = select(Warning.external_id, Warning.id, Warning.content_hash, Warning.assigned).where(
        tuple_(col(Warning.source), col(Warning.external_id)).in_([(source, e) for e in external_ids])
    )
    return {r[0]: (r[1], r[2], r[3]) for r in (await session.exec(stmt)).all()}


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
