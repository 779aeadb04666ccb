"""Request dependencies of intake, as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.areas.service import KnownAreas
from services.intake.settings import IntakeSettings
from services.intake.sources.models import SourceIdentity
from services.intake.sources.service import SourceDirectory
from shared.db import SessionFactory
from shared.problems import Problem


@dataclass
class IntakeState:
    settings: IntakeSettings
    factory: SessionFactory
    sources: SourceDirectory
    areas: KnownAreas


def _state(request: Request) -> IntakeState:
    state: IntakeState = request.app.state.intake
    return state


StateDep = Annotated[IntakeState, Depends(_state)]


async def _session(state: StateDep) -> AsyncIterator[AsyncSession]:
    # scope="function": the commit happens before the response is sent, so a 202 is only ever sent for
    # a committed record, and a failed commit becomes the error response instead.
    async with state.factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]


async def _source(
    state: StateDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> SourceIdentity:
    key = x_api_key
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            key = credentials.strip()
    unauthorized = Problem(
        401,
        "Unauthorized",
        "Send your source's API key as `Authorization: Bearer <key>` or `X-API-Key`.",
        type="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="quanzu-intake"'},
    )
    if not key or len(key) > 256:
        raise unauthorized
    identity = await state.sources.authenticate(key)
    if identity is None:
        raise unauthorized
    return identity


SourceDep = Annotated[SourceIdentity, Depends(_source)]
