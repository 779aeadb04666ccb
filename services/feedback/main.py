"""The feedback service. So far it serves health and metrics; outcomes and rates come with their issue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.feedback.db import OUTBOX
from services.feedback.metrics import FEEDBACK_REQUEST_SECONDS
from services.feedback.settings import FeedbackSettings
from shared.app import Runtime, make_app


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()

    @asynccontextmanager
    async def runtime(app: FastAPI) -> AsyncIterator[Runtime]:
        rt = Runtime.open("feedback", settings)
        rt.relay(OUTBOX)
        yield rt

    return make_app(
        title="Quanzu feedback",
        description="Records outcomes and computes the rates districts are judged by.",
        settings=settings,
        runtime=runtime,
        request_histogram=FEEDBACK_REQUEST_SECONDS,
        routers=[],
    )
