"""What every service's app is made of: engine, sessions, producer, background tasks, problems, health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import problems
from shared.db import SessionFactory, make_engine, make_pool, make_session_factory
from shared.health import Check, database_check, operations_router
from shared.http import RequestTimer
from shared.inbox import SessionBatchHandler, transactional, transactional_batch
from shared.kafka import ConsumerLoop, make_producer
from shared.logs import configure_logging
from shared.outbox import OutboxRelay
from shared.runtime import Background, Runner
from shared.scope import app_role, system_settings
from shared.settings import CommonSettings


@dataclass
class Runtime:
    """The resources a service's lifespan owns and closes."""

    service: str
    settings: CommonSettings
    engine: AsyncEngine  # requests: each transaction sets its caller's scope
    factory: SessionFactory
    #: Background work (consumers, relay, timers, jobs), always the service itself: its connections start in the
    #: system scope and are not pinged, two round trips fewer per transaction. Never for a request's work.
    system_engine: AsyncEngine
    system_factory: SessionFactory
    producer: AIOKafkaProducer
    runners: dict[str, Runner] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    background: Background | None = None

    @classmethod
    def open(cls, service: str, settings: CommonSettings) -> Runtime:
        url, role = settings.require_database_url(), app_role(service)
        engine = make_engine(url, pool_size=settings.db_pool_size, application_name=f"quanzu-{service}", role=role)
        system = make_engine(
            url,
            pool_size=settings.db_pool_size,
            application_name=f"quanzu-{service}-system",
            role=role,
            scope=system_settings(),
            pre_ping=False,
        )
        producer = make_producer(settings.kafka_bootstrap_servers, client_id=f"quanzu-{service}")
        return cls(
            service, settings, engine, make_session_factory(engine),
            system, make_session_factory(system, preset_scope=system_settings()), producer,
        )  # fmt: skip

    async def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        """A plain asyncpg pool on the service's role, closed with the runtime, for a hot path kept off the ORM."""
        pool = await make_pool(
            self.settings.require_database_url(),
            size=self.settings.db_pool_size,
            application_name=f"quanzu-{self.service}",
            role=app_role(self.service),
        )
        self.closers.append(pool.close)
        return pool

    def relay(self, outbox: sa.Table) -> OutboxRelay:
        relay = OutboxRelay(
            service=self.service,
            engine=self.system_engine,
            database_url=self.settings.require_database_url(),
            table=outbox,
            producer=self.producer,
        )
        self.runners["outbox-relay"] = relay.run
        return relay

    def consume(self, group: str, topic: str, handler: SessionBatchHandler, inbox: sa.Table) -> None:
        """Run a consumer of `topic` whose handler applies each event once, in one transaction with its inbox row
        (a partition's polled events in one transaction together, or each alone if that fails)."""
        loop = ConsumerLoop(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group=group,
            topics=[topic],
            handler=transactional(self.system_factory, inbox, group, handler),
            batch_handler=transactional_batch(self.system_factory, inbox, group, handler),
            producer=self.producer,
            concurrency=self.settings.consumer_concurrency,
        )
        self.runners[group] = loop.run

    def start(self) -> None:
        self.background = Background(
            self.producer, self.runners, bootstrap_servers=self.settings.kafka_bootstrap_servers
        )
        self.background.start()

    async def close(self) -> None:
        if self.background is not None:
            await self.background.stop()
        for closer in self.closers:
            await closer()
        await self.engine.dispose()
        await self.system_engine.dispose()

    def checks(self) -> dict[str, Check]:
        broker: Check = self.background.broker_reachable if self.background else _never
        return {"database": database_check(self.engine), "broker": broker}


async def _never() -> bool:
    return False


def make_app(
    *,
    title: str,
    description: str,
    settings: CommonSettings,
    runtime: Callable[[FastAPI], AbstractAsyncContextManager[Runtime]],
    request_histogram: Histogram,
    routers: list[Any],
) -> FastAPI:
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(app) as rt:
            app.state.runtime = rt
            rt.start()
            try:
                yield
            finally:
                await rt.close()

    app = FastAPI(title=title, version="1", description=description, lifespan=lifespan)
    problems.install(app)
    app.add_middleware(RequestTimer, histogram=request_histogram)
    for router in routers:
        app.include_router(router)
    app.include_router(operations_router(lambda: app.state.runtime.checks()))  # noqa: PLW0108 (state is set later)
    return app
