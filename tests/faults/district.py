"""The small district a fault run works in, provisioned with the `quanzu` command's functions.

Four police areas of two stations, a team per area and a backup team per station (each with an officer and a
grid worker), an operator per station, an admin; two upstream sources (the faulty run's and the fault-free
one's) with a rate limit far above the load. The district policy scales every deadline down to seconds so that
acknowledgement, arrival, follow-up and SMS deadlines fire during the run, except the call deadlines: a missed
call deadline escalates to a visit, which would make the escalations depend on timing rather than on answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.cli import admin
from services.dispatch.areas.policy import parse_areas_csv
from shared.settings import CommonSettings
from tests.faults.responders import Crew

AREAS = ("370202-011", "370202-012", "370202-021", "370202-022")
#: Per station, the area whose backup team takes over visits not acknowledged twice.
BACKUP_AREAS = ("370202-013", "370202-023")
PASSWORD = "fault-suite-password"  # a throwaway database's test members
ACK_WITHIN_S = 5
POLICY = {
    "sms_within_s": 5,
    "ack_within_s": ACK_WITHIN_S,
    "visit_arrive_within_s": 6,
    "follow_up_within_s": 6,
    "call_first_within_s": {"medium": 1800, "high": 1800, "critical": 1800},
    "call_retry_interval_s": 1800,
    "call_attempts": 3,
    "visit_for_residency": [],
    "sms_only_risk": ["low"],
    "escalate_on_busy": True,
}
#: A late responder acts after the acknowledgement and arrival deadlines have passed.
LATE_AFTER_S = 7.0
SOURCES = ("fault-run", "fault-free-run")


@dataclass(frozen=True)
class District:
    crew: Crew
    keys: dict[str, str]  # source name -> API key


async def provision(settings: CommonSettings) -> District:
    rows, errors = parse_areas_csv(admin.DEMO_AREAS.read_bytes())
    assert not errors, errors
    await admin.areas_import(settings, admin.DEMO_AREAS.read_bytes())
    station_of = {r.area_code: r.station for r in rows}
    await admin.policy_set(settings, "default", json.dumps(POLICY).encode())
    officers: dict[str, str] = {}
    grid_workers: dict[str, str] = {}
    for code in (*AREAS, *BACKUP_AREAS):
        backup = code in BACKUP_AREAS
        team = await admin.team_add(settings, f"fault-team-{code}", code, backup=backup)
        suffix = code.replace("-", "")
        for role, usernames in (("officer", officers), ("grid_worker", grid_workers)):
            username = f"fault-{role.replace('_', '')}-{suffix}"
            await _member(settings, username, role, team=team.name)
            usernames[str(team.id)] = username
    operators: dict[str, str] = {}
    for n, station in enumerate(sorted({station_of[c] for c in AREAS}), 1):
        operators[station] = f"fault-operator-{n}"
        await _member(settings, operators[station], "operator", station=station)
    await _member(settings, "fault-admin", "admin", district=True)
    keys = {name: await admin.source_add(settings, name, 10_000) for name in SOURCES}
    if not await admin.wait_until_intake_knows(settings, set(AREAS), timeout=60):
        raise RuntimeError("intake did not learn the areas from registry.events within 60 s")
    return District(Crew("fault-admin", operators, officers, grid_workers, PASSWORD), keys)


async def _member(settings: CommonSettings, username: str, role: str, **where: object) -> None:
    await admin.member_add(settings, username=username, name="故障演练", role=role, password=PASSWORD, **where)
