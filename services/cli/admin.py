"""Administration the `quanzu` command performs against the services' databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas import service as areas_service
from services.dispatch.areas.policy import parse_areas_csv
from services.dispatch.db import OUTBOX as DISPATCH_OUTBOX
from services.feedback.db import OUTBOX as FEEDBACK_OUTBOX
from services.intake.areas.repository import active_codes
from services.intake.db import OUTBOX as INTAKE_OUTBOX
from services.intake.sources import service as sources_service
from services.intake.sources.models import SourceCreate
from services.intake.sources.repository import get_by_name
from shared.db import make_engine, make_session_factory, unit_of_work
from shared.devinfra import wait_for
from shared.outbox import replay_since
from shared.settings import CommonSettings

DEMO_AREAS = Path(__file__).with_name("demo_areas.csv")
#: Fixed so that the README's examples work as written. `quanzu demo` refuses to run in production.
DEMO_SOURCES = {"demo-bank": "qz_demo_bank_key", "demo-96110": "qz_demo_96110_key"}


class AdminError(Exception):
    """A failure to report to the operator as one line, without a traceback."""


@asynccontextmanager
async def session(settings: CommonSettings) -> AsyncIterator[AsyncSession]:
    engine = make_engine(settings.require_database_url(), pool_size=1, application_name="quanzu-cli")
    try:
        async with unit_of_work(make_session_factory(engine)) as s:
            yield s
    finally:
        await engine.dispose()


async def source_add(settings: CommonSettings, name: str, rate_per_s: float) -> str:
    data = _source_create(name, rate_per_s)
    async with session(settings) as s:
        try:
            _, key = await sources_service.add_source(s, data)
        except sources_service.SourceError as exc:
            raise AdminError(str(exc)) from None
    return key


async def source_revoke(settings: CommonSettings, name: str) -> None:
    async with session(settings) as s:
        try:
            await sources_service.revoke_source(s, name)
        except sources_service.SourceError as exc:
            raise AdminError(str(exc)) from None


async def areas_import(settings: CommonSettings, data: bytes) -> areas_service.ImportSummary:
    rows, errors = parse_areas_csv(data)
    if errors:
        shown = "\n".join(f"  {e}" for e in errors[:50])
        more = f"\n  … and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise AdminError(f"nothing imported; the file has {len(errors)} error(s):\n{shown}{more}")
    async with session(settings) as s:
        return await areas_service.import_areas(s, rows)


async def areas_republish(settings: CommonSettings) -> int:
    async with session(settings) as s:
        return await areas_service.republish_all(s)


async def outbox_replay(settings: CommonSettings, since: datetime) -> dict[str, int]:
    engine = make_engine(settings.require_database_url(), pool_size=1, application_name="quanzu-cli")
    try:
        return {
            name: await replay_since(engine, table, since)
            for name, table in (
                ("intake", INTAKE_OUTBOX),
                ("dispatch", DISPATCH_OUTBOX),
                ("feedback", FEEDBACK_OUTBOX),
            )
        }
    finally:
        await engine.dispose()


@dataclass
class DemoSummary:
    areas: areas_service.ImportSummary
    sources: dict[str, str]
    area_codes: set[str]


async def demo(settings: CommonSettings) -> DemoSummary:
    """Load the demo district. Idempotent: running it again changes nothing and prints the same keys."""
    if settings.environment == "production":
        raise AdminError("`quanzu demo` loads fixed, public credentials: it refuses to run in production")
    rows, errors = parse_areas_csv(DEMO_AREAS.read_bytes())
    assert not errors, errors
    async with session(settings) as s:
        summary = await areas_service.import_areas(s, rows)
        for name, key in DEMO_SOURCES.items():
            if await get_by_name(s, name) is None:
                await sources_service.add_source(s, _source_create(name, 500), api_key=key)
    return DemoSummary(summary, dict(DEMO_SOURCES), {r.area_code for r in rows})


async def wait_until_intake_knows(settings: CommonSettings, codes: set[str], timeout: float) -> bool:
    """Whether intake's copy of the registry (kept from registry.events) holds `codes` within `timeout`."""
    engine = make_engine(settings.require_database_url(), pool_size=1, application_name="quanzu-cli")
    factory = make_session_factory(engine)

    async def known() -> bool:
        async with factory() as s:
            return codes <= await active_codes(s)

    try:
        await wait_for(known, timeout=timeout, interval=0.2, message="intake to learn the areas")
        return True
    except TimeoutError:
        return False
    finally:
        await engine.dispose()


def _source_create(name: str, rate_per_s: float) -> SourceCreate:
    try:
        return SourceCreate(name=name, rate_per_s=rate_per_s)
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors(include_input=False))
        raise AdminError(f"invalid source: {problems}") from None
