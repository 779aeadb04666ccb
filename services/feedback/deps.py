"""Request dependencies of feedback, as Annotated aliases."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.settings import FeedbackSettings
from shared import scope
from shared.deps import PrincipalDep, scoped_session


async def _member_session(request: Request, principal: PrincipalDep) -> AsyncIterator[AsyncSession]:
    async for session in scoped_session(request.app.state.runtime.factory, scope.principal_settings(principal)):
        yield session


MEMBER_SESSION = Depends(_member_session, scope="function")
MemberSessionDep = Annotated[AsyncSession, MEMBER_SESSION]


async def _snapshot_session(request: Request, principal: PrincipalDep) -> AsyncIterator[AsyncSession]:
    """For reports assembled from several queries: all of them see the same moment."""
    factory = request.app.state.runtime.factory
    async for session in scoped_session(factory, scope.principal_settings(principal), snapshot=True):
        yield session


SNAPSHOT_SESSION = Depends(_snapshot_session, scope="function")
SnapshotSessionDep = Annotated[AsyncSession, SNAPSHOT_SESSION]


def _settings(request: Request) -> FeedbackSettings:
    settings = request.app.state.runtime.settings
    assert isinstance(settings, FeedbackSettings)
    return settings


SettingsDep = Annotated[FeedbackSettings, Depends(_settings)]
