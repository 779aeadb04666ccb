"""The feedback service. So far: identity (tokens verified with dispatch's public key) and its plumbing;
outcomes and rates come with their issue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.feedback.db import ACCESS_LOG, INBOX, MEMBER_SESSIONS, OUTBOX
from services.feedback.deps import MEMBER_SESSION
from services.feedback.metrics import FEEDBACK_REQUEST_SECONDS
from services.feedback.outcomes.api import router as outcomes_router
from services.feedback.registry import GROUP, on_registry_event
from services.feedback.settings import FeedbackSettings
from services.feedback.tasks.handlers import GROUP as TASKS_GROUP
from services.feedback.tasks.handlers import on_dispatch_event
from shared import member_sessions
from shared.access_log import access_log_router
from shared.app import Runtime, make_app
from shared.auth import TokenVerifier
from shared.deps import Authenticator
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
        dispatch_events = ConsumerLoop(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group=TASKS_GROUP,
            topics=[Topic.DISPATCH_EVENTS],
            handler=transactional(rt.factory, INBOX, TASKS_GROUP, on_dispatch_event),
            producer=rt.producer,
        )
        rt.runners["dispatch-events-consumer"] = dispatch_events.run
        app.state.authenticator = Authenticator(verifier, member_sessions.lookup(rt.factory, MEMBER_SESSIONS))
        yield rt

    return make_app(
        title="Quanzu feedback",
        description="Records outcomes and computes the rates districts are judged by.",
        settings=settings,
        runtime=runtime,
        request_histogram=FEEDBACK_REQUEST_SECONDS,
        routers=[outcomes_router, access_log_router(ACCESS_LOG, MEMBER_SESSION)],
    )
