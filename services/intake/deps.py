"""Request dependencies of intake, as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Header, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.areas.service import KnownAreas
from services.intake.settings import IntakeSettings
from services.intake.sources.models import SourceIdentity
from services.intake.sources.service import SourceDirectory
from shared import scope
from shared.auth import Principal, looks_like_jwt
from shared.db import SessionFactory
from shared.deps import Authenticator, bearer, scoped_session, unauthorized
from shared.problems import Problem


@dataclass
class IntakeState:
    settings: IntakeSettings
    factory: SessionFactory
    pool: asyncpg.Pool[asyncpg.Record]  # posting warnings (`warnings.service.accept`); the rest uses sessions
    sources: SourceDirectory
    areas: KnownAreas
    authenticator: Authenticator


async def _state(request: Request) -> IntakeState:
    # async although it awaits nothing: FastAPI runs a plain `def` dependency in a worker thread, a thread hop on
    # every request for a dictionary lookup.
    state: IntakeState = request.app.state.intake
    return state


StateDep = Annotated[IntakeState, Depends(_state)]
Caller = SourceIdentity | Principal


async def authenticate(state: IntakeState, authorization: str | None, x_api_key: str | None) -> Caller:
    """An upstream source (API key, as bearer or X-API-Key) or a member (access token)."""
    credential = bearer(authorization) or x_api_key
    if credential and looks_like_jwt(credential):
        return await state.authenticator.principal(credential)
    if credential and len(credential) <= 256:
        identity = await state.sources.authenticate(credential)
        if identity is not None:
            return identity
    raise unauthorized("Send your source's API key as `Authorization: Bearer <key>` or `X-API-Key`.")


async def _caller(
    state: StateDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Caller:
    return await authenticate(state, authorization, x_api_key)


CallerDep = Annotated[Caller, Depends(_caller)]


def _only_sources(caller: Caller) -> SourceIdentity:
    if not isinstance(caller, SourceIdentity):
        raise Problem(403, "Forbidden", "Only upstream sources post warnings, with their API key.", type="forbidden")
    return caller


async def posting_source(request: Request) -> tuple[IntakeState, SourceIdentity]:
    """The posting routes' state and caller, found without FastAPI's dependency solving: on a single post, the
    solving of the three dependencies this replaces cost about a sixth of intake's CPU (measured with py-spy).
    `CREDENTIAL_HEADERS` declares the headers in the OpenAPI document, as a `Header()` parameter would."""
    state: IntakeState = request.app.state.intake
    headers = request.headers
    return state, _only_sources(await authenticate(state, headers.get("authorization"), headers.get("x-api-key")))


def _optional_header(name: str, title: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": title},
    }


CREDENTIAL_HEADERS = [_optional_header("authorization", "Authorization"), _optional_header("x-api-key", "X-Api-Key")]


async def _session(state: StateDep, caller: CallerDep) -> AsyncIterator[AsyncSession]:
    settings = (
        scope.source_settings(caller.name) if isinstance(caller, SourceIdentity) else scope.principal_settings(caller)
    )
    async for session in scoped_session(state.factory, settings):
        yield session


# scope="function": the commit happens before the response is sent, so a 202 is only ever sent for a
# committed record, and a failed commit becomes the error response instead.
SESSION = Depends(_session, scope="function")
SessionDep = Annotated[AsyncSession, SESSION]
