"""Request dependencies of dispatch, as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.notify.service import Notifier
from services.dispatch.settings import DispatchSettings
from shared import scope
from shared.auth import TokenSigner
from shared.db import SessionFactory
from shared.deps import PrincipalDep, scoped_session


@dataclass
class DispatchState:
    settings: DispatchSettings
    factory: SessionFactory
    signer: TokenSigner
    notifier: Notifier


def _state(request: Request) -> DispatchState:
    state: DispatchState = request.app.state.dispatch
    return state


StateDep = Annotated[DispatchState, Depends(_state)]


async def _system_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async for session in scoped_session(state.factory, scope.system_settings()):
        yield session


async def _member_session(state: StateDep, principal: PrincipalDep) -> AsyncIterator[AsyncSession]:
    async for session in scoped_session(state.factory, scope.principal_settings(principal)):
        yield session


async def _member_snapshot(state: StateDep, principal: PrincipalDep) -> AsyncIterator[AsyncSession]:
    async for session in scoped_session(state.factory, scope.principal_settings(principal), snapshot=True):
        yield session


#: A member's read of one object assembled from several queries, all at the same moment.
MemberSnapshotDep = Annotated[AsyncSession, Depends(_member_snapshot, scope="function")]
#: The service acting for itself (the login flow): sees what the flow needs, however the caller is scoped.
SystemSessionDep = Annotated[AsyncSession, Depends(_system_session, scope="function")]
#: A member's transaction: row-level security shows only their team, station or district.
MEMBER_SESSION = Depends(_member_session, scope="function")
MemberSessionDep = Annotated[AsyncSession, MEMBER_SESSION]
