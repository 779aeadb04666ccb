"""The dispatch service: the area registry, teams and members, logins; cases and escalation come next."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI

from services.dispatch.areas.api import router as areas_router
from services.dispatch.auth.api import router as auth_router
from services.dispatch.cases import handlers
from services.dispatch.cases.api import router as cases_router
from services.dispatch.cases.handlers import OUTCOMES_GROUP, WARNINGS_GROUP
from services.dispatch.cases.jobs import OpenCasesGauge, erase_expired_subjects
from services.dispatch.cases.service import SMS_ATTEMPTS, SMS_SEND
from services.dispatch.db import ACCESS_LOG, DEADLINES, INBOX, OUTBOX
from services.dispatch.deps import MEMBER_SESSION, DispatchState
from services.dispatch.members import repository as members
from services.dispatch.members.api import router as members_router
from services.dispatch.metrics import DISPATCH_REQUEST_SECONDS
from services.dispatch.notify.api import router as notifications_router
from services.dispatch.notify.service import RecordingNotifier
from services.dispatch.policies.api import router as policies_router
from services.dispatch.settings import DispatchSettings
from services.dispatch.sms.provider import HttpSmsProvider
from services.dispatch.tasks.api import router as tasks_router
from services.dispatch.teams.api import router as teams_router
from shared import scope
from shared.access_log import access_log_router
from shared.app import Runtime, make_app
from shared.auth import TokenSigner, TokenVerifier
from shared.db import unit_of_work
from shared.deps import Authenticator
from shared.events import Topic
from shared.runtime import every
from shared.timers import TimerEngine, Waker

SMS_BATCH = 50


def create_app(settings: DispatchSettings | None = None) -> FastAPI:
    settings = settings or DispatchSettings()

    @asynccontextmanager
    async def runtime(app: FastAPI) -> AsyncIterator[Runtime]:
        signer = TokenSigner(settings.private_key_pem(), timedelta(seconds=settings.access_token_ttl_s))
        rt = Runtime.open("dispatch", settings)
        rt.relay(OUTBOX)
        notifier = RecordingNotifier()
        for group, topic, handler in (
            (WARNINGS_GROUP, Topic.WARNINGS_RECEIVED, handlers.on_warnings(notifier)),
            (OUTCOMES_GROUP, Topic.FEEDBACK_OUTCOMES, handlers.on_outcome(notifier)),
        ):
            rt.consume(group, topic, handler, INBOX)
        waker = Waker(settings.require_database_url(), DEADLINES)  # one listener for the engines below
        rt.runners["deadline-notifications"] = waker.run
        escalations = TimerEngine(
            waker=waker,
            factory=rt.system_factory,
            database_url=settings.require_database_url(),
            table=DEADLINES,
            handler=handlers.on_deadline(notifier),
            batch_handler=handlers.on_deadlines(notifier),
            exclude_kinds=(SMS_SEND,),
        )
        rt.runners["deadlines"] = escalations.run
        http = httpx.AsyncClient()
        rt.closers.append(http.aclose)
        provider = HttpSmsProvider(
            http,
            settings.sms_provider_url,
            api_key=settings.sms_api_key.get_secret_value() or None,
            total_deadline_s=settings.sms_deadline_s,
        )
        for n in range(settings.sms_concurrency):
            sms = TimerEngine(
                waker=waker,
                factory=rt.system_factory,
                database_url=settings.require_database_url(),
                table=DEADLINES,
                handler=handlers.on_sms_due(provider, notifier),
                # Up to SMS_BATCH messages handed to the provider side by side, and recorded in one transaction;
                # senders skip each other's claimed rows.
                batch_handler=handlers.on_sms_together(provider, notifier),
                kinds=(SMS_SEND,),
                batch_size=SMS_BATCH,
                max_attempts=SMS_ATTEMPTS,
            )
            rt.runners[f"sms-{n}"] = sms.run
        gauge = OpenCasesGauge(rt.system_factory)
        rt.runners["open-cases-gauge"] = lambda: every(15, gauge.refresh, "refreshing the open-cases gauge")
        rt.runners["retention"] = lambda: every(
            3600, lambda: erase_expired_subjects(rt.system_factory, settings.retention_days), "erasing expired subjects"
        )

        async def session_state(member_id: uuid.UUID) -> tuple[bool, int] | None:
            async with unit_of_work(rt.factory, scope.system_settings()) as session:
                return await members.session_state(session, member_id)

        app.state.authenticator = Authenticator(TokenVerifier(settings.public_key_pem()), session_state)
        app.state.dispatch = DispatchState(settings, rt.factory, signer, notifier)
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
            tasks_router,
            cases_router,
            notifications_router,
            access_log_router(ACCESS_LOG, MEMBER_SESSION),
        ],
    )
