"""The intake service: accepts, validates, de-duplicates and durably stores warnings, then publishes them."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.intake.areas.handlers import GROUP as REGISTRY_GROUP
from services.intake.areas.handlers import on_registry_event
from services.intake.areas.service import KnownAreas
from services.intake.db import ACCESS_LOG, INBOX, MEMBER_SESSIONS, OUTBOX
from services.intake.deps import SESSION, IntakeState
from services.intake.metrics import INTAKE_REQUEST_SECONDS
from services.intake.settings import IntakeSettings
from services.intake.sources.api import router as sources_router
from services.intake.sources.service import SourceDirectory
from services.intake.warnings import service as warnings_service
from services.intake.warnings.api import router as warnings_router
from shared import member_sessions
from shared.access_log import access_log_router
from shared.app import Runtime, make_app
from shared.auth import TokenVerifier
from shared.db import SessionFactory, unit_of_work
from shared.deps import Authenticator
from shared.events import Envelope, Topic
from shared.inbox import each, transactional
from shared.kafka import ConsumerLoop
from shared.runtime import every
from shared.scope import system_settings

log = logging.getLogger(__name__)


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()

    @asynccontextmanager
    async def runtime(app: FastAPI) -> AsyncIterator[Runtime]:
        verifier = TokenVerifier(settings.public_key_pem())
        rt = Runtime.open("intake", settings)
        rt.relay(OUTBOX)
        areas = KnownAreas(rt.factory)
        apply_registry = transactional(rt.system_factory, INBOX, REGISTRY_GROUP, each(on_registry_event))

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

        rt.runners.update(
            {
                "registry-consumer": registry.run,
                "known-areas": lambda: every(settings.area_refresh_s, areas.refresh, "refreshing known areas"),
                "retention": lambda: every(
                    3600,
                    lambda: _erase_expired_subjects(rt.system_factory, settings.retention_days),
                    "erasing expired subjects",
                ),
            }
        )
        authenticator = Authenticator(verifier, member_sessions.lookup(rt.factory, MEMBER_SESSIONS))
        app.state.authenticator = authenticator
        sources = SourceDirectory(
            rt.factory, ttl=settings.source_cache_ttl_s, batch_max_records=settings.batch_max_records
        )
        app.state.intake = IntakeState(settings, rt.factory, await rt.pool(), sources, areas, authenticator)
        # Everything loaded so far (modules, schemas, the app) lives as long as the process: moved out of the
        # collector's reach, so that the collections a batch's allocations trigger stop re-scanning it (without
        # this, collecting took about a third of a 1,000-record batch's CPU time). Garbage is collected first, or
        # it would be kept for good.
        gc.collect()
        gc.freeze()
        yield rt

    return make_app(
        title="Quanzu intake",
        description="Accepts anti-fraud warnings from upstream systems (contract §1).",
        settings=settings,
        runtime=runtime,
        request_histogram=INTAKE_REQUEST_SECONDS,
        routers=[warnings_router, sources_router, access_log_router(ACCESS_LOG, SESSION)],
    )


async def _erase_expired_subjects(factory: SessionFactory, retention_days: int) -> None:
    """Personal data is kept only as long as needed (PIPL): erase subjects past the retention period."""
    async with unit_of_work(factory, system_settings()) as session:
        erased = await warnings_service.erase_personal_data(session, retention_days)
    if erased:
        log.info("erased the personal data of %d warnings older than %d days", erased, retention_days)
