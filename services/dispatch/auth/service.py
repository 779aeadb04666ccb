"""Logging in and refreshing: the flow from a password to a short-lived access token and a refresh token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.auth import repository
from services.dispatch.auth.models import RefreshToken, TokenResponse
from services.dispatch.auth.policy import (
    ADDRESS_RULE,
    USERNAME_RULE,
    after_failure,
    hash_refresh_token,
    locked_for,
    new_refresh_token,
)
from services.dispatch.members import repository as members
from services.dispatch.members.models import Member
from services.dispatch.members.service import principal_for, verify_password
from shared.auth import TokenSigner


@dataclass(frozen=True)
class Denied:
    """Why no token was issued; the caller commits first (failures are counted) and then answers."""

    reason: str
    retry_after: float | None = None


async def login(
    session: AsyncSession,
    username: str,
    password: str,
    client: str,
    *,
    signer: TokenSigner,
    refresh_ttl: timedelta,
) -> TokenResponse | Denied:
    now = datetime.now(UTC)
    keys = {f"user:{username.lower()}": USERNAME_RULE, f"addr:{client}": ADDRESS_RULE}
    states = await repository.throttle_states(session, list(keys))
    waits = [w for key in keys if (w := locked_for(states.get(key), now)) is not None]
    if waits:
        return Denied("too many failed logins: try again later", retry_after=max(waits))
    member = await members.get_by_username(session, username)
    usable = member is not None and member.active
    if not await verify_password(member.password_hash if usable and member else None, password) or member is None:
        for key, rule in keys.items():
            await repository.save_throttle(session, key, after_failure(states.get(key), rule, now))
        return Denied("wrong username or password")
    await repository.clear_throttle(session, f"user:{username.lower()}")
    return await _issue(session, member, uuid.uuid4(), signer=signer, refresh_ttl=refresh_ttl, now=now)


async def refresh(
    session: AsyncSession, refresh_token: str, *, signer: TokenSigner, refresh_ttl: timedelta
) -> TokenResponse | Denied:
    now = datetime.now(UTC)
    token = await repository.get_refresh_for_update(session, hash_refresh_token(refresh_token))
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        return Denied("the refresh token is unknown, expired or revoked")
    if token.used_at is not None:
        await repository.revoke_family(session, token.family_id)
        return Denied("the refresh token was already used: every session of its family is revoked")
    member = await members.get(session, token.member_id)
    if member is None or not member.active:
        return Denied("the member is not active")
    token.used_at = now
    session.add(token)
    return await _issue(session, member, token.family_id, signer=signer, refresh_ttl=refresh_ttl, now=now)


async def revoke(session: AsyncSession, refresh_token: str) -> None:
    token = await repository.get_refresh_for_update(session, hash_refresh_token(refresh_token))
    if token is not None:
        await repository.revoke_family(session, token.family_id)


async def _issue(
    session: AsyncSession,
    member: Member,
    family_id: uuid.UUID,
    *,
    signer: TokenSigner,
    refresh_ttl: timedelta,
    now: datetime,
) -> TokenResponse:
    principal = await principal_for(session, member)
    raw = new_refresh_token()
    await repository.add_refresh(
        session,
        RefreshToken(
            member_id=member.id,
            family_id=family_id,
            token_hash=hash_refresh_token(raw),
            created_at=now,
            expires_at=now + refresh_ttl,
        ),
    )
    return TokenResponse(
        access_token=signer.issue(principal, now),
        expires_in=int(signer.ttl.total_seconds()),
        refresh_token=raw,
    )
