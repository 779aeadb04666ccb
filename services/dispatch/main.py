"""The dispatch service. So far it owns the area registry and publishes its changes; cases come next."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.dispatch.db import OUTBOX
from services.dispatch.metrics import DISPATCH_REQUEST_SECONDS
from services.dispatch.settings import DispatchSettings
from shared.app import Runtime, make_app


def create_app(settings: DispatchSettings | None = None) -> FastAPI:
    settings = settings or DispatchSettings()

    @asynccontextmanager
    async def runtime(app: FastAPI) -> AsyncIterator[Runtime]:
        rt = Runtime.open("dispatch", settings)
        rt.relay(OUTBOX)
        yield rt

    return make_app(
        title="Quanzu dispatch",
        description="Escalates cases SMS → phone → face-to-face visit under per-area SLAs.",
        settings=settings,
        runtime=runtime,
        request_histogram=DISPATCH_REQUEST_SECONDS,
        routers=[],
    )
