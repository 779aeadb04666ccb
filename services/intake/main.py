"""The intake service: accepts, validates, de-duplicates and durably stores warnings, then publishes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.intake.areas.handlers import GROUP as REGISTRY_GROUP
from services.intake.areas.handlers import on_registry_event
from services.intake.areas.service import KnownAreas
from services.intake.db import INBOX, OUTBOX
from services.intake.deps import IntakeState
from services.intake.metrics import INTAKE_REQUEST_SECONDS
from services.intake.settings import IntakeSettings
from services.intake.sources.service import SourceDirectory
from services.intake.warnings.api import router as warnings_router
from shared.app import Runtime, make_app
from shared.events import Envelope, Topic
from shared.inbox import transactional
from shared.kafka import ConsumerLoop


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()

    @asynccontextmanager
    async def runtime(app: FastAPI) -> AsyncIterator[Runtime]:
        rt = Runtime.open("intake", settings)
        rt.relay(OUTBOX)
        areas = KnownAreas(rt.factory, settings.area_refresh_s)
        apply_registry = transactional(rt.factory, INBOX, REGISTRY_GROUP, on_registry_event)

        async def on_registry(envelope: Envelope) -> None:
            await apply_registry(envelope)
            await areas.refresh()

        registry = ConsumerLoop(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group=REGISTRY_GROUP,
            topics=[Topic.REGISTRY_EVENTS],
            handler=on_registry,
            producer=rt.producer,
        )
        rt.runners.update({"registry-consumer": registry.run, "known-areas": areas.run})
        sources = SourceDirectory(
            rt.factory, ttl=settings.source_cache_ttl_s, batch_max_records=settings.batch_max_records
        )
        app.state.intake = IntakeState(settings, rt.factory, sources, areas)
        yield rt

    return make_app(
        title="Quanzu intake",
        description="Accepts anti-fraud warnings from upstream systems (contract §1).",
        settings=settings,
        runtime=runtime,
        request_histogram=INTAKE_REQUEST_SECONDS,
        routers=[warnings_router],
    )
