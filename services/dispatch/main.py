"""The dispatch service: the area registry, teams and members, logins; cases and escalation come next."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from services.dispatch.areas.api import router as areas_router
from services.dispatch.auth.api import router as auth_router
from services.dispatch.db import ACCESS_LOG, OUTBOX
from services.dispatch.deps import MEMBER_SESSION, DispatchState
from services.dispatch.members import repository as members
from services.dispatch.members.api import router as members_router
from services.dispatch.metrics import DISPATCH_REQUEST_SECONDS
from services.dispatch.policies.api import router as policies_router
from services.dispatch.settings import DispatchSettings
from services.dispatch.teams.api import router as teams_router
from shared import scope
from shared.access_log import access_log_router
from shared.app import Runtime, make_app
from shared.auth import TokenSigner, TokenVerifier
from shared.db import unit_of_work
from shared.deps import Authenticator


def create_app(settings: DispatchSettings | None = None) -> FastAPI:
    settings = settings or DispatchSettings()

    @asynccontextmanager
    async def runtime(app: FastAPI) -> AsyncIterator[Runtime]:
        signer = TokenSigner(settings.private_key_pem(), timedelta(seconds=settings.access_token_ttl_s))
        rt = Runtime.open("dispatch", settings)
        rt.relay(OUTBOX)

        async def session_state(member_id: uuid.UUID) -> tuple[bool, int] | None:
            async with unit_of_work(rt.factory, scope.system_settings()) as session:
                return await members.session_state(session, member_id)

        app.state.authenticator = Authenticator(TokenVerifier(settings.public_key_pem()), session_state)
        app.state.dispatch = DispatchState(settings, rt.factory, signer)
        yield rt

    return make_app(
        title="Quanzu dispatch",
        description="Escalates cases SMS → phone → face-to-face visit under per-area SLAs.",
        settings=settings,
        runtime=runtime,
        request_histogram=DISPATCH_REQUEST_SECONDS,
        routers=[
            auth_router,
            areas_router,
            teams_router,
            members_router,
            policies_router,
            access_log_router(ACCESS_LOG, MEMBER_SESSION),
        ],
    )
