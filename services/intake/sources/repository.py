from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.sources.models import Source, SourceKey


async def get_by_name(session: AsyncSession, name: str) -> Source | None:
    return (await session.exec(select(Source).where(Source.name == name))).first()


async def list_all(session: AsyncSession) -> list[Source]:
    return list((await session.exec(select(Source).order_by(col(Source.name)))).all())


async def find_active_by_key_hash(session: AsyncSession, key_hash: str) -> Source | None:
    stmt = (
        select(Source)
        .join(SourceKey, col(SourceKey.source_id) == col(Source.id))
        .where(
            SourceKey.key_hash == key_hash,
            col(SourceKey.revoked_at).is_(None),
            col(Source.revoked_at).is_(None),
        )
    )
    return (await session.exec(stmt)).first()


async def add(session: AsyncSession, source: Source) -> Source:
    session.add(source)
    await session.flush()
    return source


async def add_key(session: AsyncSession, source_id: uuid.UUID, key_hash: str, key_prefix: str) -> SourceKey:
    key = SourceKey(source_id=source_id, key_hash=key_hash, key_prefix=key_prefix)
    session.add(key)
    await session.flush()
    return key


async def revoke(session: AsyncSession, source: Source) -> None:
    now = datetime.now(UTC)
    source.revoked_at = now
    session.add(source)
    await session.exec(
        update(SourceKey)
        .where(col(SourceKey.source_id) == source.id, col(SourceKey.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    await session.flush()


async def active_keys(session: AsyncSession, source_id: uuid.UUID) -> list[SourceKey]:
    stmt = select(SourceKey).where(SourceKey.source_id == source_id, col(SourceKey.revoked_at).is_(None))
    return list((await session.exec(stmt.order_by(col(SourceKey.created_at)))).all())


async def revoke_key(session: AsyncSession, source_id: uuid.UUID, key_prefix: str) -> bool:
    stmt = (
        update(SourceKey)
        .where(
            col(SourceKey.source_id) == source_id,
            col(SourceKey.key_prefix) == key_prefix,
            col(SourceKey.revoked_at).is_(None),
        )
        .values(revoked_at=datetime.now(UTC))
    )
    result = await session.exec(stmt)
    return bool(result.rowcount)
