from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.auth.models import LoginThrottle, RefreshToken
from services.dispatch.auth.policy import ThrottleState


async def get_refresh_for_update(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    return (await session.exec(stmt)).first()


async def add_refresh(session: AsyncSession, token: RefreshToken) -> None:
    session.add(token)
    await session.flush()


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def revoke_member_tokens(session: AsyncSession, member_id: uuid.UUID) -> None:
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.member_id) == member_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def throttle_states(session: AsyncSession, keys: list[str]) -> dict[str, ThrottleState]:
    rows = await session.exec(select(LoginThrottle).where(col(LoginThrottle.key).in_(keys)))
    return {r.key: ThrottleState(r.failures, r.window_started_at, r.locked_until) for r in rows.all()}


async def save_throttle(session: AsyncSession, key: str, state: ThrottleState) -> None:
    values = {
        "key": key,
        "failures": state.failures,
        "window_started_at": state.window_started_at,
        "locked_until": state.locked_until,
    }
    stmt = insert(LoginThrottle).values(**values)
    await session.exec(stmt.on_conflict_do_update(index_elements=[col(LoginThrottle.key)], set_=values))


async def clear_throttle(session: AsyncSession, key: str) -> None:
    await session.exec(delete(LoginThrottle).where(col(LoginThrottle.key) == key))
