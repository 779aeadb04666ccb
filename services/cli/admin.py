"""Administration the `quanzu` command performs against the services' databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas import service as areas_service
from services.dispatch.areas.policy import parse_areas_csv
from services.dispatch.db import OUTBOX as DISPATCH_OUTBOX
from services.dispatch.members import repository as members_repository
from services.dispatch.members import service as members_service
from services.dispatch.members.models import Member, MemberCreate
from services.dispatch.policies import service as policies_service
from services.dispatch.policies.models import EffectivePolicy
from services.dispatch.policies.policy import PolicyFile
from services.dispatch.teams import repository as teams_repository
from services.dispatch.teams import service as teams_service
from services.dispatch.teams.models import Team, TeamCreate
from services.feedback.cases import service as feedback_read_model
from services.feedback.db import OUTBOX as FEEDBACK_OUTBOX
from services.feedback.fraud_reports import repository as feeds_repository
from services.feedback.fraud_reports import service as feeds_service
from services.feedback.settings import FeedbackSettings
from services.intake.areas.repository import active_codes
from services.intake.db import OUTBOX as INTAKE_OUTBOX
from services.intake.sources import service as sources_service
from services.intake.sources.models import SourceCreate
from services.intake.sources.repository import get_by_name
from shared.db import make_engine, make_session_factory, unit_of_work
from shared.devinfra import wait_for
from shared.outbox import replay_since
from shared.problems import field_errors
from shared.scope import system_settings
from shared.settings import CommonSettings

M = TypeVar("M", bound=BaseModel)
DEMO_AREAS = Path(__file__).with_name("demo_areas.csv")
#: Fixed so that the README's examples work as written. `quanzu demo` refuses to run in production.
DEMO_SOURCES = {"demo-bank": "qz_demo_bank_key", "demo-96110": "qz_demo_96110_key"}
DEMO_FEEDS = {"demo-reports": "qz_demo_reports_key"}


class AdminError(Exception):
    """A failure to report to the operator as one line, without a traceback."""


@asynccontextmanager
async def session(settings: CommonSettings) -> AsyncIterator[AsyncSession]:
    engine = make_engine(settings.require_database_url(), pool_size=1, application_name="quanzu-cli")
    try:
        async with unit_of_work(make_session_factory(engine), system_settings()) as s:
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


async def feed_add(settings: CommonSettings, name: str) -> str:
    _check_name("name", name)
    async with session(settings) as s:
        try:
            return await feeds_service.add_feed(s, name)
        except feeds_service.FeedError as exc:
            raise AdminError(str(exc)) from None


async def feed_revoke(settings: CommonSettings, name: str) -> None:
    async with session(settings) as s:
        try:
            await feeds_service.revoke_feed(s, name)
        except feeds_service.FeedError as exc:
            raise AdminError(str(exc)) from None


def _check_name(field: str, name: str) -> None:
    if not 1 <= len(name) <= 64 or not name.isprintable() or name.strip() != name:
        raise AdminError(f"{field}: 1 to 64 printable characters, without surrounding spaces")


async def feedback_rebuild(settings: FeedbackSettings) -> feedback_read_model.Replayed:
    """Clear feedback's read model and replay its topics from their start (with the feedback service stopped)."""
    engine = make_engine(settings.require_database_url(), pool_size=2, application_name="quanzu-cli")
    try:
        factory = make_session_factory(engine)
        await feedback_read_model.clear(factory, settings)
        return await feedback_read_model.replay(factory, settings)
    finally:
        await engine.dispose()


async def source_rotate(settings: CommonSettings, name: str) -> tuple[str, str]:
    async with session(settings) as s:
        try:
            return await sources_service.rotate_key(s, name)
        except sources_service.SourceError as exc:
            raise AdminError(str(exc)) from None


async def source_revoke_key(settings: CommonSettings, name: str, prefix: str) -> None:
    async with session(settings) as s:
        try:
            await sources_service.revoke_key(s, name, prefix)
        except sources_service.SourceError as exc:
            raise AdminError(str(exc)) from None


async def team_add(settings: CommonSettings, name: str, area_code: str, backup: bool) -> Team:
    data = _valid(TeamCreate, name=name, area_code=area_code, backup=backup)
    async with session(settings) as s:
        try:
            return await teams_service.add_team(s, data)
        except teams_service.TeamError as exc:
            raise AdminError(str(exc)) from None


async def member_add(settings: CommonSettings, **fields: object) -> tuple[Member, str | None]:
    data = _valid(MemberCreate, **fields)
    async with session(settings) as s:
        try:
            return await members_service.add_member(s, data)
        except members_service.MemberError as exc:
            raise AdminError(str(exc)) from None


async def member_deactivate(settings: CommonSettings, username: str) -> None:
    async with session(settings) as s:
        try:
            await members_service.deactivate(s, username)
        except members_service.MemberError as exc:
            raise AdminError(str(exc)) from None


async def policy_set(settings: CommonSettings, scope: str, data: bytes) -> tuple[int, bool]:
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdminError(f"the policy file is not valid JSON: {exc}") from None
    file = _valid(PolicyFile, **raw) if isinstance(raw, dict) else None
    if file is None:
        raise AdminError("the policy file must hold a JSON object")
    async with session(settings) as s:
        try:
            version, changed = await policies_service.set_policy(s, scope, file, by="quanzu-cli")
        except policies_service.PolicyError as exc:
            raise AdminError(str(exc)) from None
    return version.version, changed


async def policy_show(settings: CommonSettings, area_code: str) -> EffectivePolicy:
    async with session(settings) as s:
        try:
            return await policies_service.effective(s, area_code)
        except policies_service.PolicyError as exc:
            raise AdminError(str(exc)) from None


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


#: Every demo login has this password. Development only: `quanzu demo` refuses to run in production.
DEMO_PASSWORD = "demo-password"  # noqa: S105


@dataclass
class DemoSummary:
    areas: areas_service.ImportSummary
    sources: dict[str, str]
    area_codes: set[str]
    logins: list[tuple[str, str, str]]  # (username, role, where)


async def demo(settings: CommonSettings) -> DemoSummary:
    """Load the demo district. Idempotent: running it again changes nothing and prints the same keys."""
    if settings.environment == "production":
        raise AdminError("`quanzu demo` loads fixed, public credentials: it refuses to run in production")
    rows, errors = parse_areas_csv(DEMO_AREAS.read_bytes())
    assert not errors, errors
    logins: list[tuple[str, str, str]] = []
    async with session(settings) as s:
        summary = await areas_service.import_areas(s, rows)
        for name, key in DEMO_SOURCES.items():
            if await get_by_name(s, name) is None:
                await sources_service.add_source(s, _source_create(name, 500), api_key=key)
        for name, key in DEMO_FEEDS.items():
            if await feeds_repository.feed_by_name(s, name) is None:
                await feeds_service.add_feed(s, name, api_key=key)
        wanted: list[MemberCreate] = [
            MemberCreate(username="admin", name="区反诈中心管理员", role="admin", district=True, password=DEMO_PASSWORD)
        ]
        stations = sorted({r.station for r in rows})
        for n, station in enumerate(stations, 1):
            wanted += [
                MemberCreate(
                    username=f"supervisor{n}",
                    name=f"{station}值班长",
                    role="supervisor",
                    station=station,
                    password=DEMO_PASSWORD,
                ),
                MemberCreate(
                    username=f"operator{n}",
                    name=f"96110坐席{n}",
                    role="operator",
                    station=station,
                    password=DEMO_PASSWORD,
                ),
            ]
        for area in rows:
            team = f"{area.area_name}劝阻队"
            if await teams_repository.get_by_name(s, team) is None:
                await teams_service.add_team(s, TeamCreate(name=team, area_code=area.area_code))
            suffix = area.area_code.rsplit("-", 1)[-1]
            for role, title in (("officer", "民警"), ("auxiliary", "辅警"), ("grid_worker", "网格员")):
                wanted.append(
                    MemberCreate(username=f"{role.replace('_', '')}{suffix}", name=f"{area.area_name}{title}",
                                 role=role, team=team, password=DEMO_PASSWORD)
                )  # fmt: skip
        # The district default is the contract's; 太平角 upgrades phone dissuasion of residents, workers and
        # transit subjects to a visit (电话劝阻提级为见面劝阻), as the documents' district did.
        await policies_service.set_policy(s, "default", PolicyFile(), by="quanzu-demo")
        residency_rule = PolicyFile(visit_for_residency=["resident", "worker", "transit"])
        await policies_service.set_policy(s, "370202-012", residency_rule, by="quanzu-demo")
        for member in wanted:
            if await members_repository.get_by_username(s, member.username) is None:
                await members_service.add_member(s, member)
            logins.append((member.username, member.role, member.team or member.station or "district"))
    return DemoSummary(summary, dict(DEMO_SOURCES), {r.area_code for r in rows}, logins)


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
    return _valid(SourceCreate, name=name, rate_per_s=rate_per_s)


def _valid(model: type[M], **fields: object) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        # named as the HTTP API names them: a rule across fields names its field, not ": Value error, ..."
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in field_errors(exc))
        raise AdminError(f"invalid {model.__name__.removesuffix('Create').lower()}: {problems}") from None
