"""Real infrastructure for the suite: PostgreSQL (embedded unless QUANZU_TEST_DATABASE_URL names a server)
and a tansu broker owned by the suite, so tests can stop and restart it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli import admin
from services.dispatch.areas.policy import parse_areas_csv
from services.dispatch.main import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.feedback.main import create_app as create_feedback
from services.feedback.settings import FeedbackSettings
from services.intake.main import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.smsgw.main import create_app as create_smsgw
from shared import migrate
from shared.auth import generate_keypair
from shared.db import make_engine
from shared.devinfra import Broker, drop_database, ensure_database, free_port, start_postgres, wait_for
from shared.kafka import ensure_topics
from shared.settings import CommonSettings

TEST_HOME = Path(".quanzu")
SUBJECT_SECRET = "test-subject-secret"
TOKEN_PRIVATE_KEY, TOKEN_PUBLIC_KEY = generate_keypair()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    configured = os.environ.get("QUANZU_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    server, url = start_postgres(TEST_HOME / "test-pg")
    yield url
    server.cleanup()


@asynccontextmanager
async def migrated_database(pg_admin_url: str, name: str) -> AsyncIterator[str]:
    """A database of this test process's own, made anew with every migration; dropped afterwards."""
    await drop_database(pg_admin_url, name)
    url = await ensure_database(pg_admin_url, name)
    await asyncio.to_thread(migrate.upgrade, url)
    try:
        yield url
    finally:
        await drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    async with migrated_database(pg_admin_url, f"quanzu_test_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    TEST_HOME.mkdir(exist_ok=True)
    with (TEST_HOME / "test-broker.log").open("ab") as log:
        b = Broker(free_port(), log=log)
        b.start()
        asyncio.run(ensure_topics(b.bootstrap))
        yield b
        b.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart the session's broker run last: tansu comes back empty, topics are re-created with other
    partition counts and consumer groups re-form, which later tests must not depend on. (They cannot simply use a
    broker of their own: the session's services relay the same database's outboxes to the session's broker.)"""
    items.sort(key=lambda item: item.get_closest_marker("restarts_broker") is not None)


def _settings(cls: type[Any], database_url: str, broker: Broker, **extra: Any) -> Any:
    return cls(
        _env_file=None,
        database_url=database_url,
        kafka_bootstrap_servers=broker.bootstrap,
        subject_key_secret=SUBJECT_SECRET,
        token_public_key=TOKEN_PUBLIC_KEY,
        **extra,
    )


@pytest.fixture(scope="session")
def common_settings(database_url: str, broker: Broker) -> CommonSettings:
    settings: CommonSettings = _settings(CommonSettings, database_url, broker)
    return settings


@pytest.fixture(scope="session")
def intake_settings(database_url: str, broker: Broker) -> IntakeSettings:
    settings: IntakeSettings = _settings(IntakeSettings, database_url, broker, area_refresh_s=0.5)
    return settings


class AppClient(httpx.AsyncClient):
    """An HTTP client bound to an app running in this process (its lifespan entered)."""

    def __init__(self, app: FastAPI, name: str) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")
        self.app = app


@asynccontextmanager
async def scratch_schema(
    database_url: str, schema: str, metadata: sa.MetaData, *, ddl: Iterable[str] = (), pool_size: int = 5
) -> AsyncIterator[AsyncEngine]:
    """An engine on `schema`, created afresh with `metadata`'s tables (and `ddl` after them), dropped afterwards:
    for tests of shared plumbing (timers, locking) on tables of their own."""
    engine = make_engine(database_url, pool_size=pool_size)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        await conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        await conn.run_sync(metadata.create_all)
        for statement in ddl:
            await conn.execute(sa.text(statement))
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        await engine.dispose()


@asynccontextmanager
async def running(app: FastAPI, name: str) -> AsyncIterator[AppClient]:
    async with app.router.lifespan_context(app), AppClient(app, name) as client:
        yield client


@pytest.fixture(scope="session")
async def intake(intake_settings: IntakeSettings) -> AsyncIterator[AppClient]:
    async with running(create_intake(intake_settings), "intake") as client:
        yield client


@pytest.fixture(scope="session")
async def sms_gateway() -> AsyncIterator[str]:
    """The development SMS gateway, served for real on a free port: the suite's carrier."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_smsgw(), host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                return (await client.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(up, timeout=20, message="the SMS gateway")
    yield url
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
def dispatch_settings(database_url: str, broker: Broker, sms_gateway: str) -> DispatchSettings:
    settings: DispatchSettings = _settings(
        DispatchSettings, database_url, broker, token_private_key=TOKEN_PRIVATE_KEY, sms_provider_url=sms_gateway
    )
    return settings


@pytest.fixture(scope="session")
async def dispatch(dispatch_settings: DispatchSettings) -> AsyncIterator[AppClient]:
    async with running(create_dispatch(dispatch_settings), "dispatch") as client:
        yield client


@pytest.fixture(scope="session")
async def feedback(database_url: str, broker: Broker) -> AsyncIterator[AppClient]:
    async with running(create_feedback(_settings(FeedbackSettings, database_url, broker)), "feedback") as client:
        yield client


@pytest.fixture(scope="session")
async def demo_areas(common_settings: CommonSettings, dispatch: AppClient, intake: AppClient) -> set[str]:
    """The demo district's areas, imported into the registry and known to intake through registry.events."""
    rows, _ = parse_areas_csv(admin.DEMO_AREAS.read_bytes())
    await admin.areas_import(common_settings, admin.DEMO_AREAS.read_bytes())
    codes = {r.area_code for r in rows}
    await wait_for(
        lambda: codes <= intake.app.state.intake.areas.codes, timeout=30, message="intake to learn the areas"
    )
    return codes


class SourceCredentials:
    def __init__(self, name: str, key: str) -> None:
        self.name = name
        self.key = key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def new_source(settings: CommonSettings, rate_per_s: float = 10_000) -> SourceCredentials:
    name = f"test-{uuid.uuid4().hex[:12]}"
    key = await admin.source_add(settings, name, rate_per_s)
    return SourceCredentials(name, key)


@pytest.fixture
async def source(common_settings: CommonSettings) -> SourceCredentials:
    return await new_source(common_settings)


class Member:
    """A member created for a test, logged in through the real token endpoint."""

    def __init__(self, username: str, password: str, role: str, tokens: dict[str, Any]) -> None:
        self.username = username
        self.password = password
        self.role = role
        self.tokens = tokens

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


async def login(dispatch: AppClient, username: str, password: str) -> httpx.Response:
    return await dispatch.post(
        "/v1/auth/token", data={"grant_type": "password", "username": username, "password": password}
    )


async def new_member(
    settings: CommonSettings, dispatch: AppClient, role: str, *, team: str | None = None, station: str | None = None
) -> Member:
    username = f"{role.replace('_', '')}-{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    await admin.member_add(
        settings, username=username, name="测试", role=role, team=team, station=station,
        district=role == "admin", password=password,
    )  # fmt: skip
    response = await login(dispatch, username, password)
    assert response.status_code == 200, response.text
    return Member(username, password, role, response.json())


@pytest.fixture(scope="session")
async def demo_teams(common_settings: CommonSettings, demo_areas: set[str]) -> dict[str, str]:
    """A team per demo area: area code -> team name."""
    teams = {}
    for code in sorted(demo_areas):
        name = f"team-{code}"
        await admin.team_add(common_settings, name, code, backup=False)
        teams[code] = name
    return teams


@pytest.fixture
async def admin_member(common_settings: CommonSettings, dispatch: AppClient) -> Member:
    return await new_member(common_settings, dispatch, "admin")
