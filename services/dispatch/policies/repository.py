from __future__ import annotations

import uuid

from sqlalchemy.dialects.postgresql import distinct_on
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.policies.models import PolicyVersion


async def latest(session: AsyncSession, scope: str, *, lock: bool = False) -> PolicyVersion | None:
    stmt = (
        select(PolicyVersion).where(PolicyVersion.scope == scope).order_by(col(PolicyVersion.version).desc()).limit(1)
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.exec(stmt.limit(1))).first()


async def latest_of(session: AsyncSession, scopes: list[str]) -> dict[str, PolicyVersion]:
    """The latest version of each of `scopes` that has one, in one query (a case opening reads two)."""
    stmt = (
        select(PolicyVersion)
        .where(col(PolicyVersion.scope).in_(scopes))
        .ext(distinct_on(col(PolicyVersion.scope)))
        .order_by(col(PolicyVersion.scope), col(PolicyVersion.version).desc())
    )
    return {v.scope: v for v in (await session.exec(stmt)).all()}


async def add(session: AsyncSession, policy: PolicyVersion) -> PolicyVersion:
    session.add(policy)
    await session.flush()
    return policy


async def by_ids(session: AsyncSession, scope: str, ids: set[str]) -> PolicyVersion | None:
    """Of the given versions, the one of `scope` (a case's versions, whatever has been set since)."""
    if not ids:
        return None
    stmt = select(PolicyVersion).where(
        PolicyVersion.scope == scope, col(PolicyVersion.id).in_([uuid.UUID(i) for i in ids])
    )
    return (await session.exec(stmt)).first()
