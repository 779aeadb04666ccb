"""Request dependencies of feedback, as Annotated aliases."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from shared import scope
from shared.deps import PrincipalDep, scoped_session


async def _member_session(request: Request, principal: PrincipalDep) -> AsyncIterator[AsyncSession]:
    async for session in scoped_session(request.app.state.runtime.factory, scope.principal_settings(principal)):
        yield session


MEMBER_SESSION = Depends(_member_session, scope="function")
MemberSessionDep = Annotated[AsyncSession, MEMBER_SESSION]
