"""Loading a simulated district into a system: areas, teams, members, the upstream source and the scaled policy,
through the same service functions `quanzu demo` uses. Idempotent: what exists is left as it is, so a second
`quanzu simulate --attach` reuses the district.

Development only, like `quanzu demo`: every simulated member has the same fixed password and the source a fixed
key, and loading refuses to run in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.cli import admin
from services.dispatch.members import repository as members_repository
from services.dispatch.members import service as members_service
from services.dispatch.members.models import MemberCreate
from services.dispatch.policies import service as policies_service
from services.dispatch.policies.policy import PolicyFile
from services.dispatch.teams import repository as teams_repository
from services.dispatch.teams import service as teams_service
from services.dispatch.teams.models import TeamCreate
from services.intake.sources import service as sources_service
from services.intake.sources.models import SourceCreate
from services.intake.sources.repository import get_by_name
from services.sim.district import District, MemberSpec
from shared.settings import CommonSettings

SIM_PASSWORD = "sim-password"  # noqa: S105 (development only, like the demo's; refused in production)
SIM_ADMIN = "sim-admin"
SIM_SOURCE = "sim-warnings"
SIM_SOURCE_KEY = "qz_sim_warnings_key"
#: Members per transaction: each costs an argon2 hash (about 0.25 s), so progress is shown and kept in steps.
MEMBER_BATCH = 25


async def load(
    settings: CommonSettings,
    district: District,
    policy: dict[str, Any],
    *,
    set_default: bool,
    say: Callable[[str], None] = lambda _: None,
) -> None:
    if settings.environment == "production":
        raise admin.AdminError("`quanzu simulate` loads fixed, public credentials: it refuses to run in production")
    summary = await admin.areas_import(settings, district.csv())
    say(f"areas: {summary.created} created, {summary.updated} updated, {summary.unchanged} unchanged")
    file = PolicyFile.model_validate(policy)
    async with admin.session(settings) as s:
        if await get_by_name(s, SIM_SOURCE) is None:
            await sources_service.add_source(
                s, SourceCreate(name=SIM_SOURCE, rate_per_s=10_000), api_key=SIM_SOURCE_KEY
            )
        for team in district.teams():
            if await teams_repository.get_by_name(s, team.name) is None:
                await teams_service.add_team(s, TeamCreate(name=team.name, area_code=team.area_code))
        scopes = ["default"] if set_default else []
        for scope in [*scopes, *(a.code for a in district.areas)]:
            await policies_service.set_policy(s, scope, file, by="quanzu-simulate")
    wanted = [MemberSpec(SIM_ADMIN, "模拟区反诈中心", "admin", district=True), *district.members()]
    created = 0
    for start in range(0, len(wanted), MEMBER_BATCH):
        async with admin.session(settings) as s:
            for spec in wanted[start : start + MEMBER_BATCH]:
                if await members_repository.get_by_username(s, spec.username) is None:
                    await members_service.add_member(s, _member(spec))
                    created += 1
        say(f"members: {min(start + MEMBER_BATCH, len(wanted))}/{len(wanted)} ({created} created)")
    if not await admin.wait_until_intake_knows(settings, district.codes, 60):
        say("intake has not learnt the simulated areas yet: early warnings may go to the unassigned queue")


def _member(spec: MemberSpec) -> MemberCreate:
    return MemberCreate(
        username=spec.username,
        name=spec.name,
        role=spec.role,
        team=spec.team,
        station=spec.station,
        district=spec.district,
        password=SIM_PASSWORD,
    )
