"""The feedback service. So far: identity (tokens verified with dispatch's public key) and its plumbing;
outcomes and rates come with their issue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.db import ACCESS_LOG, INBOX, MEMBER_SESSIONS, OUTBOX
from services.feedback.metrics import FEEDBACK_REQUEST_SECONDS
from services.feedback.registry import GROUP, on_registry_event
from services.feedback.settings import FeedbackSettings
from shared import member_sessions, scope
from shared.access_log import access_log_router
from shared.app import Runtime, make_app
from shared.auth import TokenVerifier
from shared.deps import Authenticator, PrincipalDep, scoped_session
from shared.events import Topic
from shared.inbox import transactional
from shared.kafka import ConsumerLoop


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()

    @asynccontextmanager
    async def runtime(app: FastAPI) -> AsyncIterator[Runtime]:
        verifier = TokenVerifier(settings.public_key_pem())
        rt = Runtime.open("feedback", settings)
        rt.relay(OUTBOX)
        registry = ConsumerLoop(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group=GROUP,
            topics=[Topic.REGISTRY_EVENTS],
            handler=transactional(rt.factory, INBOX, GROUP, on_registry_event),
            producer=rt.producer,
        )
        rt.runners["registry-consumer"] = registry.run
        app.state.authenticator = Authenticator(verifier, member_sessions.lookup(rt.factory, MEMBER_SESSIONS))
        yield rt

    async def member_session(request: Request, principal: PrincipalDep) -> AsyncIterator[AsyncSession]:
        async for session in scoped_session(request.app.state.runtime.factory, scope.principal_settings(principal)):
            yield session

    return make_app(
        title="Quanzu feedback",
        description="Records outcomes and computes the rates districts are judged by.",
        settings=settings,
        runtime=runtime,
        request_histogram=FEEDBACK_REQUEST_SECONDS,
        routers=[access_log_router(ACCESS_LOG, Depends(member_session, scope="function"))],
    )
