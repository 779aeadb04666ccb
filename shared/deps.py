"""Request dependencies every service shares: the calling member, and transactions scoped to the caller."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Principal, TokenError, TokenVerifier, looks_like_jwt
from shared.db import SessionFactory, set_local
from shared.problems import Problem

#: (member_id, epoch) -> whether the member is active and the token's epoch is current; None if unknown.
SessionLookup = Callable[[uuid.UUID], Awaitable[tuple[bool, int] | None]]


def unauthorized(detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail, type="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="quanzu"'}
    )


class Authenticator:
    """Verifies member tokens, and ends the sessions of deactivated members within `ttl` seconds."""

    def __init__(self, verifier: TokenVerifier, lookup: SessionLookup, *, ttl: float = 2.0) -> None:
        self.verifier = verifier
        self.lookup = lookup
        self.ttl = ttl
        self._cache: dict[uuid.UUID, tuple[float, tuple[bool, int] | None]] = {}

    async def principal(self, token: str) -> Principal:
        try:
            principal = self.verifier.verify(token)
        except TokenError:
            raise unauthorized("The access token is invalid or expired: log in again.") from None
        state = await self._state(principal.member_id)
        # Unknown here means not yet propagated (a new member): the signature is proof enough until it is.
        if state is not None and (not state[0] or state[1] != principal.epoch):
            raise unauthorized("This session has ended: log in again.")
        return principal

    async def _state(self, member_id: uuid.UUID) -> tuple[bool, int] | None:
        now = time.monotonic()
        cached = self._cache.get(member_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        state = await self.lookup(member_id)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[member_id] = (now + self.ttl, state)
        return state


def bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, credentials = authorization.partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


async def current_principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    token = bearer(authorization)
    if token is None or not looks_like_jwt(token):
        raise unauthorized("Send a member access token as `Authorization: Bearer <token>` (POST /v1/auth/token).")
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.principal(token)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise Problem(403, "Forbidden", f"This needs one of the roles: {', '.join(roles)}.", type="forbidden")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_roles("admin"))]


async def scoped_session(
    factory: SessionFactory, settings: dict[str, str], *, snapshot: bool = False
) -> AsyncIterator[AsyncSession]:
    """A transaction with the caller's scope set; commits when the request handler returns, else rolls back.

    Used with `Depends(..., scope="function")` so the commit happens before the response is sent. `snapshot`:
    every statement sees the same moment (REPEATABLE READ), for reads that assemble one object from several
    queries and must not show half of a concurrent change.
    """
    async with factory() as session:
        try:
            if snapshot:
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            await set_local(session, settings)
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
