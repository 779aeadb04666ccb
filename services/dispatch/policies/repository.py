from __future__ import annotations

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


async def add(session: AsyncSession, policy: PolicyVersion) -> PolicyVersion:
    session.add(policy)
    await session.flush()
    return policy
