from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import distinct_on
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.policies.models import DEFAULT_SCOPE, PolicyVersion
from shared.db import forget, remembered

#: Memos of the policies in force, for one transaction: the versions, and what a case gets from them.
IN_FORCE_MEMO, VALUES_MEMO = "policies.in_force", "policies.values"
#: The district's version and the area's, either of which may be missing.
Versions = tuple[PolicyVersion | None, PolicyVersion | None]


async def latest(session: AsyncSession, scope: str) -> PolicyVersion | None:
    stmt = (
        select(PolicyVersion).where(PolicyVersion.scope == scope).order_by(col(PolicyVersion.version).desc()).limit(1)
    )
    return (await session.exec(stmt)).first()


async def in_force(session: AsyncSession, area_code: str | None) -> Versions:
    """The latest district and area versions, in one query (a case opening reads both). Read once per area and
    transaction: a consumer's batch of warnings opens cases in a few areas."""

    async def read() -> Versions:
        stmt = (
            select(PolicyVersion)
            .where(col(PolicyVersion.scope).in_(_scopes(area_code)))
            .ext(distinct_on(col(PolicyVersion.scope)))
            .order_by(col(PolicyVersion.scope), col(PolicyVersion.version).desc())
        )
        return _by_scope((await session.exec(stmt)).all(), area_code)

    return await remembered(session, IN_FORCE_MEMO, area_code, read)


async def of_versions(session: AsyncSession, ids: set[str], area_code: str | None) -> Versions:
    """Of the given versions, the district's and the area's (a case's versions, whatever has been set since)."""
    if not ids:
        return None, None
    stmt = select(PolicyVersion).where(
        col(PolicyVersion.scope).in_(_scopes(area_code)), col(PolicyVersion.id).in_([uuid.UUID(i) for i in ids])
    )
    return _by_scope((await session.exec(stmt)).all(), area_code)


def _scopes(area_code: str | None) -> list[str]:
    return [DEFAULT_SCOPE, area_code] if area_code else [DEFAULT_SCOPE]


def _by_scope(versions: Sequence[PolicyVersion], area_code: str | None) -> Versions:
    found = {v.scope: v for v in versions}
    return found.get(DEFAULT_SCOPE), found.get(area_code) if area_code else None


async def add(session: AsyncSession, policy: PolicyVersion) -> PolicyVersion:
    forget(session, IN_FORCE_MEMO, VALUES_MEMO)  # a new version is in force from now on
    session.add(policy)
    await session.flush()
    return policy
