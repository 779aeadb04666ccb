"""The authorization matrix: every route of every service, called by every kind of caller, against a rule.

The routes come from the apps themselves (each service's OpenAPI, plus the routes it leaves out of the
schema such as /metrics), so a route nobody wrote a rule for fails `test_every_route_has_a_rule`, and a
rule for a route that is gone fails `test_every_rule_names_a_route`.

How to add a route (e.g. dispatch's GET /v1/tasks/{task_id}, feedback's POST /v1/outcomes)
-----------------------------------------------------------------------------------------
1. RULES: add `(service, METHOD, path template exactly as in the OpenAPI)` mapping *every* principal
   (see PRINCIPALS) to what it must get: ALLOWED (any 2xx), UNAUTHENTICATED (401), FORBIDDEN (403),
   HIDDEN (404: an object outside the caller's scope, so ids cannot be probed) or `status(...)`.
   Shortcuts: `public()`, `members()`, `admin_only()`, `roles(...)`, and dict unpacking to override, e.g.
   for a task of 370202-011's team: `{**members(), "other_officer": HIDDEN}`, or for GET /v1/cases/{id}:
   `roles("supervisor", "admin")`.
2. REQUESTS: if the route has path parameters or a body, add an async builder
   `(world, principal) -> Call` that returns the concrete path and a *valid* body, so a 2xx proves the
   caller was allowed, not merely that validation failed first. Create real objects in the World
   fixture (e.g. a task of area 370202-011's team) or, for destructive routes (deactivate, revoke,
   DELETE), a throwaway target per call: builders are called once per principal.
3. Run `pytest tests/security`: `test_rules_are_complete` checks that every principal has an answer.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.routing import Route

from services.cli import admin
from shared.devinfra import wait_for
from shared.settings import CommonSettings
from tests.conftest import AppClient, Member, SourceCredentials, new_member, new_source
from tests.factories import mobile, warning_record

Service = Literal["intake", "dispatch", "feedback"]
Principal = Literal[
    "anonymous",
    "source",
    "officer",
    "auxiliary",
    "grid_worker",
    "operator",
    "supervisor",
    "admin",
    "other_officer",
]
PRINCIPALS: tuple[Principal, ...] = (
    "anonymous",
    "source",  # an upstream system with its API key
    "officer",  # the field team of 370202-011 (八大关派出所)
    "auxiliary",
    "grid_worker",
    "operator",  # 八大关派出所: areas 370202-011..013
    "supervisor",
    "admin",  # the district
    "other_officer",  # the field team of 370202-021 (中山路派出所): another area, another station
)
MEMBERS: tuple[Principal, ...] = tuple(p for p in PRINCIPALS if p not in ("anonymous", "source"))
SERVICES: tuple[Service, ...] = ("intake", "dispatch", "feedback")

HOME_AREA = "370202-011"
OTHER_AREA = "370202-021"
HOME_STATION = "八大关派出所"
# An area of this module's own, for the teams and members the admin routes create: the demo areas keep
# exactly the teams other tests expect of them.
SCRATCH_AREA = "370202-991"
SCRATCH_AREAS_CSV = (
    f"area_code,area_name,station,street,district\n{SCRATCH_AREA},安全测试警务区,安全测试派出所,安全测试街道,市南区\n"
).encode()


@dataclass(frozen=True)
class Expect:
    """The statuses a principal may get from a route."""

    statuses: frozenset[int]
    label: str

    def __contains__(self, status_code: object) -> bool:
        return status_code in self.statuses


def status(*codes: int) -> Expect:
    return Expect(frozenset(codes), "/".join(map(str, codes)))


ALLOWED = Expect(frozenset(range(200, 300)), "2xx")
UNAUTHENTICATED = status(401)
FORBIDDEN = status(403)
HIDDEN = status(404)

Rule = dict[Principal, Expect]
RouteKey = tuple[Service, str, str]


def public(expect: Expect = ALLOWED) -> Rule:
    """No credentials needed; whatever a caller sends, the answer is the same."""
    return dict.fromkeys(PRINCIPALS, expect)


def members(expect: Expect = ALLOWED) -> Rule:
    """Any logged-in member. An API key is not a member token: 401."""
    return {"anonymous": UNAUTHENTICATED, "source": UNAUTHENTICATED, **dict.fromkeys(MEMBERS, expect)}


def roles(*allowed: Principal, expect: Expect = ALLOWED) -> Rule:
    """Members of the given roles; other members 403, callers without a member token 401."""
    return {**members(FORBIDDEN), **dict.fromkeys(allowed, expect)}


def admin_only(expect: Expect = ALLOWED) -> Rule:
    return roles("admin", expect=expect)


#: FastAPI's documentation routes and the operations routes every service has (shared/health.py).
_COMMON: dict[tuple[str, str], Rule] = {
    ("GET", "/openapi.json"): public(),
    ("GET", "/docs"): public(),
    ("GET", "/docs/oauth2-redirect"): public(),
    ("GET", "/redoc"): public(),
    ("GET", "/healthz"): public(),
    # Public; 503 is readiness (the broker or database unreachable), not authorization.
    ("GET", "/readyz"): public(Expect(frozenset({*range(200, 300), 503}), "2xx/503")),
    ("GET", "/metrics"): public(),
    # shared/access_log.py: who read which full personal fields.
    ("GET", "/v1/admin/access-log"): admin_only(),
}


def _with_common(service: Service, rules: Mapping[tuple[str, str], Rule]) -> dict[RouteKey, Rule]:
    return {(service, method, path): rule for (method, path), rule in {**_COMMON, **rules}.items()}


VISIT_TASK: Rule = {**members(), "grid_worker": HIDDEN, "operator": HIDDEN, "other_officer": HIDDEN}

RULES: dict[RouteKey, Rule] = {
    **_with_common(
        "intake",
        {
            # Only upstream sources post warnings; a member token is authenticated but the wrong kind of caller.
            ("POST", "/v1/warnings"): {**members(FORBIDDEN), "source": ALLOWED},
            ("POST", "/v1/warnings/batch"): {**members(FORBIDDEN), "source": ALLOWED},
            # The warning is the source's own and of area 370202-011: its station sees it; a grid worker sees
            # no warnings at all (only follow-up tasks); another area's officer cannot tell it exists.
            ("GET", "/v1/warnings/{warning_id}"): {
                **members(ALLOWED),
                "source": ALLOWED,
                "grid_worker": HIDDEN,
                "other_officer": HIDDEN,
            },
            ("POST", "/v1/admin/sources"): admin_only(),
            ("GET", "/v1/admin/sources"): admin_only(),
            ("POST", "/v1/admin/sources/{name}/keys"): admin_only(),
            ("DELETE", "/v1/admin/sources/{name}/keys/{key_prefix}"): admin_only(),
            ("DELETE", "/v1/admin/sources/{name}"): admin_only(),
        },
    ),
    **_with_common(
        "dispatch",
        {
            # Public by design: the credentials are in the form, not the Authorization header. Members log in
            # with their own password (200); anonymous sends a wrong password and the source an unknown refresh
            # token (401, never 5xx).
            ("POST", "/v1/auth/token"): {
                **public(ALLOWED),
                "anonymous": UNAUTHENTICATED,
                "source": UNAUTHENTICATED,
            },
            ("POST", "/v1/auth/revoke"): public(status(204)),  # RFC 7009: always 204, even for unknown tokens
            ("GET", "/v1/me"): members(),
            ("POST", "/v1/admin/areas"): admin_only(),
            ("GET", "/v1/admin/areas"): admin_only(),
            ("POST", "/v1/admin/teams"): admin_only(),
            ("GET", "/v1/admin/teams"): admin_only(),
            ("POST", "/v1/admin/members"): admin_only(),
            ("GET", "/v1/admin/members"): admin_only(),
            ("POST", "/v1/admin/members/{username}/deactivate"): admin_only(),
            ("PUT", "/v1/admin/policies/{area_code}"): admin_only(),
            ("GET", "/v1/admin/policies/{area_code}"): admin_only(),
            # Every member has a task list (empty or not); a task is the visit of 370202-011's team: its officer,
            # auxiliary, station supervisor and admins see and act on it; the grid worker (follow-ups only), the
            # operator (calls only) and another area's officer cannot tell it exists.
            ("GET", "/v1/tasks"): members(),
            ("GET", "/v1/tasks/{task_id}"): VISIT_TASK,
            ("POST", "/v1/tasks/{task_id}/accept"): VISIT_TASK,
            ("POST", "/v1/tasks/{task_id}/arrive"): VISIT_TASK,
            ("POST", "/v1/tasks/{task_id}/decline"): VISIT_TASK,
            ("GET", "/v1/cases/{case_id}"): roles("supervisor", "admin"),
            # a case from the district's unassigned queue, given to an area of the supervisor's station
            ("POST", "/v1/cases/{case_id}/assign"): roles("supervisor", "admin"),
            ("GET", "/v1/dev/notifications"): roles("supervisor", "admin"),
        },
    ),
    **_with_common(
        "feedback",
        {
            # an outcome for a visit of 370202-011's team: whoever may act on the visit may record it, and read
            # its outcomes (the correction history); whoever cannot see the visit cannot tell it exists
            ("POST", "/v1/outcomes"): VISIT_TASK,
            ("GET", "/v1/outcomes"): VISIT_TASK,
            # Every member has rates and a bulletin: row-level security scopes the rows they are computed from.
            ("GET", "/v1/stats/rates"): members(),
            ("GET", "/v1/reports/monthly"): members(),
            # Only a crime-report feed posts reports, with its own API key: an intake source's key is not one
            # (401), and a member token is authenticated but the wrong kind of caller (403).
            ("POST", "/v1/fraud-reports"): members(FORBIDDEN),
        },
    ),
}


# --- the world the calls are made in -------------------------------------------------------------------


@dataclass
class World:
    settings: CommonSettings
    clients: dict[Service, AppClient]
    source: SourceCredentials
    members: dict[Principal, Member]
    warning_id: str
    scratch_team: str
    visit_task_id: str = ""
    case_id: str = ""

    def headers(self, principal: Principal) -> dict[str, str]:
        if principal == "anonymous":
            return {}
        if principal == "source":
            return self.source.headers
        return self.members[principal].headers


@dataclass(frozen=True)
class Call:
    """One concrete request: the path with its parameters filled in, and a valid body."""

    path: str
    json: Any = None
    data: dict[str, str] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Builder = Callable[[World, Principal], Awaitable[Call]]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _post_warning(world: World, principal: Principal) -> Call:
    return Call("/v1/warnings", json=warning_record(area_code=HOME_AREA))


async def _post_batch(world: World, principal: Principal) -> Call:
    return Call("/v1/warnings/batch", json={"warnings": [warning_record(area_code=HOME_AREA)]})


async def _get_warning(world: World, principal: Principal) -> Call:
    return Call(f"/v1/warnings/{world.warning_id}")


async def _add_source(world: World, principal: Principal) -> Call:
    return Call("/v1/admin/sources", json={"name": _unique("sec"), "rate_per_s": 5})


async def _rotate_key(world: World, principal: Principal) -> Call:
    target = await new_source(world.settings)
    return Call(f"/v1/admin/sources/{target.name}/keys")


async def _revoke_key(world: World, principal: Principal) -> Call:
    target = await new_source(world.settings)
    return Call(f"/v1/admin/sources/{target.name}/keys/{target.key[:12]}")


async def _revoke_source(world: World, principal: Principal) -> Call:
    target = await new_source(world.settings)
    return Call(f"/v1/admin/sources/{target.name}")


async def _token(world: World, principal: Principal) -> Call:
    if principal == "anonymous":  # the suite's failed-login budget is small: this is the one failure spent here
        form = {"grant_type": "password", "username": _unique("nobody"), "password": "not-the-password"}
    elif principal == "source":
        form = {"grant_type": "refresh_token", "refresh_token": "not-a-refresh-token"}
    else:
        member = world.members[principal]
        form = {"grant_type": "password", "username": member.username, "password": member.password}
    return Call("/v1/auth/token", data=form)


async def _revoke(world: World, principal: Principal) -> Call:
    return Call("/v1/auth/revoke", data={"refresh_token": _unique("unknown-refresh-token")})


async def _import_areas(world: World, principal: Principal) -> Call:
    return Call("/v1/admin/areas", content=SCRATCH_AREAS_CSV, headers={"Content-Type": "text/csv; charset=utf-8"})


async def _add_team(world: World, principal: Principal) -> Call:
    return Call("/v1/admin/teams", json={"name": _unique("sec-team"), "area_code": SCRATCH_AREA})


async def _add_member(world: World, principal: Principal) -> Call:
    body = {
        "username": _unique("sec-member"),
        "name": "测试队员",
        "role": "officer",
        "team": world.scratch_team,
        "password": f"pw-{uuid.uuid4().hex}",
    }
    return Call("/v1/admin/members", json=body)


async def _deactivate(world: World, principal: Principal) -> Call:
    username = _unique("sec-target")
    await admin.member_add(
        world.settings, username=username, name="待停用", role="officer", team=world.scratch_team,
        password=f"pw-{uuid.uuid4().hex}",
    )  # fmt: skip
    return Call(f"/v1/admin/members/{username}/deactivate")


async def _set_policy(world: World, principal: Principal) -> Call:
    return Call(f"/v1/admin/policies/{SCRATCH_AREA}", json={"sms_within_s": 60, "call_attempts": 3})


async def _show_policy(world: World, principal: Principal) -> Call:
    return Call(f"/v1/admin/policies/{SCRATCH_AREA}")


BACKLOG_S = 120.0


async def _visit_of(world: World, risk: str = "critical", area_code: str | None = HOME_AREA) -> dict[str, Any]:
    """Post a warning and wait for dispatch to open its case; returns its first task (a visit, if asked for)."""
    posted = await world.clients["intake"].post(
        "/v1/warnings", json=warning_record(area_code=area_code, risk_level=risk), headers=world.source.headers
    )
    admin_headers = world.members["admin"].headers
    tier = "visit" if area_code else "sms"

    async def first() -> dict[str, Any] | None:
        response = await world.clients["dispatch"].get(
            "/v1/tasks",
            params={"status": "all", "warning_id": posted.json()["id"], "tier": tier},
            headers=admin_headers,
        )
        items: list[dict[str, Any]] = response.json()["items"]
        return items[0] if items else None

    # The apps are shared with the session's other tests: this warning may queue behind their backlog (a
    # 1,000-record batch from the intake tests takes dispatch about 30 s), hence a deadline well past that.
    task: dict[str, Any] = await wait_for(first, timeout=BACKLOG_S, interval=0.1, message="dispatch to open the case")
    return task


async def _task(world: World, principal: Principal) -> Call:
    return Call(f"/v1/tasks/{world.visit_task_id}")


async def _accept(world: World, principal: Principal) -> Call:
    return Call(f"/v1/tasks/{world.visit_task_id}/accept")


async def _arrive(world: World, principal: Principal) -> Call:
    return Call(f"/v1/tasks/{world.visit_task_id}/arrive", json={"lat": 36.06, "lon": 120.38})


async def _decline(world: World, principal: Principal) -> Call:
    task = await _visit_of(world)  # a visit of its own: declining moves it on
    return Call(f"/v1/tasks/{task['id']}/decline", json={"reason": "the team is at another visit"})


async def _outcome(world: World, principal: Principal) -> Call:
    visit = await _visit_of(world)  # one outcome per task: a visit of its own
    admin_headers = world.members["admin"].headers
    probe = {"task_id": visit["id"], "kind": "call", "call_result": "no_answer"}  # wrong kind: 422 once known

    async def known() -> bool:
        response = await world.clients["feedback"].post("/v1/outcomes", json=probe, headers=admin_headers)
        return response.status_code == 422

    await wait_for(known, timeout=BACKLOG_S, interval=0.1, message="feedback to learn the task from dispatch.events")
    return Call("/v1/outcomes", json={"task_id": visit["id"], "kind": "visit", "dissuasion_result": "dissuaded"})


async def _outcomes(world: World, principal: Principal) -> Call:
    path = f"/v1/outcomes?task_id={world.visit_task_id}"
    admin_headers = world.members["admin"].headers

    async def known() -> bool:
        response = await world.clients["feedback"].get(path, headers=admin_headers)
        return response.status_code == 200

    await wait_for(known, timeout=BACKLOG_S, interval=0.1, message="feedback to learn the task from dispatch.events")
    return Call(path)


async def _rates(world: World, principal: Principal) -> Call:
    now = datetime.now(UTC)
    window = urlencode(
        {"from": (now - timedelta(days=1)).isoformat(), "to": (now + timedelta(days=1)).isoformat(), "group_by": "area"}
    )
    return Call(f"/v1/stats/rates?{window}")


async def _monthly(world: World, principal: Principal) -> Call:
    return Call(f"/v1/reports/monthly?month={datetime.now(ZoneInfo('Asia/Shanghai')):%Y-%m}")


def fraud_report() -> dict[str, Any]:
    return {
        "external_id": _unique("sec-report"),
        "reported_at": datetime.now(UTC).isoformat(),
        "subject": {"phone": mobile()},
        "loss": 1000.0,
        "fraud_type": "investment",
    }


async def _fraud_report(world: World, principal: Principal) -> Call:
    return Call("/v1/fraud-reports", json=fraud_report())


async def _case(world: World, principal: Principal) -> Call:
    return Call(f"/v1/cases/{world.case_id}")


async def _assign(world: World, principal: Principal) -> Call:
    sms = await _visit_of(world, risk="high", area_code=None)  # a case of its own, in the unassigned queue
    return Call(f"/v1/cases/{sms['case_id']}/assign", json={"area_code": HOME_AREA})


REQUESTS: dict[RouteKey, Builder] = {
    ("intake", "POST", "/v1/warnings"): _post_warning,
    ("intake", "POST", "/v1/warnings/batch"): _post_batch,
    ("intake", "GET", "/v1/warnings/{warning_id}"): _get_warning,
    ("intake", "POST", "/v1/admin/sources"): _add_source,
    ("intake", "POST", "/v1/admin/sources/{name}/keys"): _rotate_key,
    ("intake", "DELETE", "/v1/admin/sources/{name}/keys/{key_prefix}"): _revoke_key,
    ("intake", "DELETE", "/v1/admin/sources/{name}"): _revoke_source,
    ("dispatch", "POST", "/v1/auth/token"): _token,
    ("dispatch", "POST", "/v1/auth/revoke"): _revoke,
    ("dispatch", "POST", "/v1/admin/areas"): _import_areas,
    ("dispatch", "POST", "/v1/admin/teams"): _add_team,
    ("dispatch", "POST", "/v1/admin/members"): _add_member,
    ("dispatch", "POST", "/v1/admin/members/{username}/deactivate"): _deactivate,
    ("dispatch", "PUT", "/v1/admin/policies/{area_code}"): _set_policy,
    ("dispatch", "GET", "/v1/admin/policies/{area_code}"): _show_policy,
    ("dispatch", "GET", "/v1/tasks/{task_id}"): _task,
    ("dispatch", "POST", "/v1/tasks/{task_id}/accept"): _accept,
    ("dispatch", "POST", "/v1/tasks/{task_id}/arrive"): _arrive,
    ("dispatch", "POST", "/v1/tasks/{task_id}/decline"): _decline,
    ("dispatch", "GET", "/v1/cases/{case_id}"): _case,
    ("feedback", "POST", "/v1/outcomes"): _outcome,
    ("feedback", "GET", "/v1/outcomes"): _outcomes,
    ("feedback", "GET", "/v1/stats/rates"): _rates,
    ("feedback", "GET", "/v1/reports/monthly"): _monthly,
    ("feedback", "POST", "/v1/fraud-reports"): _fraud_report,
    ("dispatch", "POST", "/v1/cases/{case_id}/assign"): _assign,
}


def _plain(route: RouteKey) -> Builder:
    """No parameters, no body: the path as it stands."""

    async def build(world: World, principal: Principal) -> Call:
        return Call(route[2])

    return build


@pytest.fixture(scope="module")
async def world(
    common_settings: CommonSettings,
    intake: AppClient,
    dispatch: AppClient,
    feedback: AppClient,
    demo_teams: dict[str, str],
) -> World:
    await admin.areas_import(common_settings, SCRATCH_AREAS_CSV)
    scratch_team = _unique("sec-scratch-team")
    await admin.team_add(common_settings, scratch_team, SCRATCH_AREA, backup=False)

    home_team, other_team = demo_teams[HOME_AREA], demo_teams[OTHER_AREA]
    people: dict[Principal, Member] = {
        "officer": await new_member(common_settings, dispatch, "officer", team=home_team),
        "auxiliary": await new_member(common_settings, dispatch, "auxiliary", team=home_team),
        "grid_worker": await new_member(common_settings, dispatch, "grid_worker", team=home_team),
        "operator": await new_member(common_settings, dispatch, "operator", station=HOME_STATION),
        "supervisor": await new_member(common_settings, dispatch, "supervisor", station=HOME_STATION),
        "admin": await new_member(common_settings, dispatch, "admin"),
        "other_officer": await new_member(common_settings, dispatch, "officer", team=other_team),
    }
    source = await new_source(common_settings)
    posted = await intake.post("/v1/warnings", json=warning_record(area_code=HOME_AREA), headers=source.headers)
    assert posted.status_code == 202, posted.text
    assert posted.json()["assigned"] is True, posted.text
    world = World(
        settings=common_settings,
        clients={"intake": intake, "dispatch": dispatch, "feedback": feedback},
        source=source,
        members=people,
        warning_id=posted.json()["id"],
        scratch_team=scratch_team,
    )
    visit = await _visit_of(world)
    world.visit_task_id, world.case_id = visit["id"], visit["case_id"]
    return world


# --- what the apps serve ----------------------------------------------------------------------------------


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(METHOD, path) of every route, schema or not. FastAPI ≥ 0.16x keeps included routers as nested
    branches (`original_router` with its include prefix); older versions flatten them into plain routes."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _walk(included.routes, prefix + getattr(route.include_context, "prefix", ""))
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":  # added by Starlette to every GET
                    yield method, prefix + route.path


def schema_routes(client: AppClient) -> set[tuple[str, str]]:
    paths: dict[str, dict[str, Any]] = client.app.openapi()["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def served_routes(service: Service, client: AppClient) -> set[RouteKey]:
    served = set(_walk(client.app.routes))
    in_schema = schema_routes(client)
    assert in_schema <= served, f"{service}: the route walk missed {sorted(in_schema - served)}"
    return {(service, method, path) for method, path in served | in_schema}


# --- the tests --------------------------------------------------------------------------------------------


def test_rules_are_complete() -> None:
    """Every rule answers for every principal, and every route with parameters or a body has a builder."""
    incomplete = {
        key: sorted(set(PRINCIPALS) - set(rule)) for key, rule in RULES.items() if set(rule) != set(PRINCIPALS)
    }
    assert not incomplete, f"rules without an answer for some principals: {incomplete}"
    needs_builder = [key for key in RULES if "{" in key[2] and key not in REQUESTS]
    assert not needs_builder, f"routes with path parameters need a REQUESTS builder: {needs_builder}"
    stale = sorted(set(REQUESTS) - set(RULES))
    assert not stale, f"REQUESTS builders for routes without a rule: {stale}"


async def test_every_route_has_a_rule(intake: AppClient, dispatch: AppClient, feedback: AppClient) -> None:
    clients: dict[Service, AppClient] = {"intake": intake, "dispatch": dispatch, "feedback": feedback}
    served = set().union(*(served_routes(name, client) for name, client in clients.items()))
    missing = sorted(served - set(RULES))
    assert not missing, f"routes without an authorization rule (add them to RULES): {missing}"
    with_body = [
        (name, method.upper(), path)
        for name, client in clients.items()
        for path, operations in client.app.openapi()["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation and (name, method.upper(), path) not in REQUESTS
    ]
    assert not with_body, f"routes with a request body need a REQUESTS builder with a valid body: {with_body}"


async def test_every_rule_names_a_route(intake: AppClient, dispatch: AppClient, feedback: AppClient) -> None:
    clients: dict[Service, AppClient] = {"intake": intake, "dispatch": dispatch, "feedback": feedback}
    served = set().union(*(served_routes(name, client) for name, client in clients.items()))
    stale = sorted(set(RULES) - served)
    assert not stale, f"rules for routes no service serves any more (remove them): {stale}"


def _route_id(key: RouteKey) -> str:
    return f"{key[0]}:{key[1]}:{re.sub(r'[{}]', '', key[2])}"


@pytest.mark.parametrize("route", sorted(RULES), ids=_route_id)
async def test_route_answers_every_principal_as_its_rule_says(route: RouteKey, world: World) -> None:
    service, method, _ = route
    build = REQUESTS.get(route) or _plain(route)
    mismatches: list[str] = []
    for principal in PRINCIPALS:
        call = await build(world, principal)
        response = await world.clients[service].request(
            method,
            call.path,
            headers={**world.headers(principal), **call.headers},
            json=call.json,
            data=call.data,
            content=call.content,
        )
        expected = RULES[route][principal]
        if response.status_code not in expected:
            mismatches.append(_mismatch(principal, expected, call, method, response))
    assert not mismatches, f"{service} {method} {route[2]}:\n" + "\n".join(mismatches)


def _mismatch(principal: Principal, expected: Expect, call: Call, method: str, response: httpx.Response) -> str:
    return (
        f"  {principal}: expected {expected.label}, got {response.status_code} "
        f"for {method} {call.path}: {response.text[:300]}"
    )


async def test_the_fraud_report_the_matrix_posts_is_accepted_from_a_feed(world: World) -> None:
    """No principal of the matrix may post crime reports: the body they send is valid from a feed's own key,
    so their 401s and 403s are about who they are, not about the body."""
    key = await admin.feed_add(world.settings, _unique("sec-feed"))
    call = await _fraud_report(world, "anonymous")
    response = await world.clients["feedback"].post(call.path, json=call.json, headers={"X-API-Key": key})
    assert response.status_code == 201, response.text


async def test_a_member_token_for_another_area_sees_no_trace_of_the_warning(world: World) -> None:
    """HIDDEN must look exactly like an id that does not exist, so a caller cannot probe for warnings."""
    hidden = await world.clients["intake"].get(
        f"/v1/warnings/{world.warning_id}", headers=world.headers("other_officer")
    )
    absent = await world.clients["intake"].get(f"/v1/warnings/{uuid.uuid4()}", headers=world.headers("other_officer"))
    assert hidden.status_code == absent.status_code == 404
    assert {k: v for k, v in hidden.json().items() if k != "instance"} == {
        k: v for k, v in absent.json().items() if k != "instance"
    }


async def test_another_areas_warning_stays_hidden_on_every_pooled_connection(world: World) -> None:
    """Row-level security must hold whatever a pooled connection did before: concurrent reads open fresh
    connections, hidden reads (404) roll their transaction back, admin reads commit an access-log entry."""
    url = f"/v1/warnings/{world.warning_id}"
    mix: list[Principal] = ["other_officer", "admin", "grid_worker", "supervisor", "other_officer", "officer"] * 3
    for _ in range(4):
        responses = await asyncio.gather(*(world.clients["intake"].get(url, headers=world.headers(p)) for p in mix))
        answers = [(p, r.status_code) for p, r in zip(mix, responses, strict=True)]
        wrong = [(p, code) for p, code in answers if code != (404 if p in ("other_officer", "grid_worker") else 200)]
        assert not wrong, f"GET {url}: {wrong}"
