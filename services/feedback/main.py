"""The feedback service: outcomes, crime reports, and the rates and bulletins districts are judged by."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.feedback.cases.handlers import read_model_consumers
from services.feedback.db import ACCESS_LOG, INBOX, MEMBER_SESSIONS, OUTBOX
from services.feedback.deps import MEMBER_SESSION
from services.feedback.fraud_reports.api import router as fraud_reports_router
from services.feedback.metrics import FEEDBACK_REQUEST_SECONDS
from services.feedback.outcomes.api import router as outcomes_router
from services.feedback.settings import FeedbackSettings
from services.feedback.stats.api import router as stats_router
from shared import member_sessions
from shared.access_log import access_log_router
from shared.app import Runtime, make_app
from shared.auth import TokenVerifier
from shared.deps import Authenticator


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()

    @asynccontextmanager
    async def runtime(app: FastAPI) -> AsyncIterator[Runtime]:
        verifier = TokenVerifier(settings.public_key_pem())
        rt = Runtime.open("feedback", settings)
        rt.relay(OUTBOX)

        secret = settings.subject_key_secret.get_secret_value()
        for group, topic, handler in read_model_consumers(secret, settings.post_warning_window):
            rt.consume(group, topic, handler, INBOX)
        app.state.authenticator = Authenticator(verifier, member_sessions.lookup(rt.factory, MEMBER_SESSIONS))
        yield rt

    return make_app(
        title="Quanzu feedback",
        description="Records outcomes and crime reports, and computes the rates districts are judged by.",
        settings=settings,
        runtime=runtime,
        request_histogram=FEEDBACK_REQUEST_SECONDS,
        routers=[
            outcomes_router,
            fraud_reports_router,
            stats_router,
            access_log_router(ACCESS_LOG, MEMBER_SESSION),
        ],
    )
