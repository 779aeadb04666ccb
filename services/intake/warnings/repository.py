from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.warnings.models import Warning


async def insert_new(session: AsyncSession, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert the rows whose (source, external_id) is new; returns the ids actually inserted."""
    if not rows:
        return set()
    table = Warning.__table__  # type: ignore[attr-defined]
    stmt = insert(table).on_conflict_do_nothing(index_elements=["source", "external_id"]).returning(table.c.id)
    conn = await session.connection()
    result = await conn.execute(stmt, rows)
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
