"""Security end to end: member tokens on all three services, refresh-token rotation, login throttling, ending
sessions, area scoping and masking, row-level security in PostgreSQL itself, the append-only access log,
hostile input, and source key rotation.

The login throttle counts failures per client address too (30 in 15 minutes locks every in-process login of
the whole suite), so this file keeps its failed logins few: 5 in the lockout test, a handful elsewhere.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth import AUDIENCE, ISSUER, Principal, TokenSigner, generate_keypair
from shared.db import asyncpg_dsn
from shared.devinfra import wait_for
from shared.settings import CommonSettings
from tests.conftest import (
    TOKEN_PRIVATE_KEY,
    AppClient,
    Member,
    SourceCredentials,
    login,
    new_member,
    new_source,
)
from tests.factories import valid_id_number, warning_record

PROBLEM_JSON = "application/problem+json"
BAYI = "八大关派出所"  # station of 370202-011/012/013
ZHONGSHAN = "中山路派出所"  # station of 370202-021/022/023
PROPAGATION_TIMEOUT_S = 30.0  # member.changed through the outbox, the broker and the consumers


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def private_key_object(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def registered_claims(principal: Principal, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        **principal.claims(),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=10)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


async def principal_of(dispatch: AppClient, member: Member) -> Principal:
    """The member's principal as dispatch describes it in GET /v1/me (a new member's epoch is 0)."""
    response = await dispatch.get("/v1/me", headers=member.headers)
    assert response.status_code == 200, response.text
    me = response.json()
    return Principal(
        member_id=uuid.UUID(me["member_id"]),
        username=me["username"],
        role=me["role"],
        epoch=0,
        team_id=uuid.UUID(me["team_id"]) if me["team_id"] else None,
        station=me["station"],
        areas=frozenset(me["areas"]),
    )


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


@asynccontextmanager
async def lenient(client: AppClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same running app that answers an unhandled exception as the 500 a real server would send,
    instead of raising it in the test (so "never 5xx" is checked on the status code)."""
    transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=client.base_url) as c:
        yield c


async def refresh(dispatch: AppClient, refresh_token: str) -> httpx.Response:
    return await dispatch.post("/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token})


async def post_warning(intake: AppClient, source: SourceCredentials, **overrides: Any) -> str:
    response = await intake.post("/v1/warnings", json=warning_record(**overrides), headers=source.headers)
    assert response.status_code == 202, response.text
    warning_id: str = response.json()["id"]
    return warning_id


# The three places a member token is checked: dispatch signs it, intake and feedback verify it by key alone.
Probe = Callable[[dict[str, str]], Awaitable[httpx.Response]]


def probes(dispatch: AppClient, intake: AppClient, feedback: AppClient) -> dict[str, Probe]:
    some_warning = f"/v1/warnings/{uuid.uuid4()}"

    async def on_dispatch(headers: dict[str, str]) -> httpx.Response:
        return await dispatch.get("/v1/me", headers=headers)

    async def on_intake(headers: dict[str, str]) -> httpx.Response:
        return await intake.get(some_warning, headers=headers)

    async def on_feedback(headers: dict[str, str]) -> httpx.Response:
        return await feedback.get("/v1/admin/access-log", headers=headers)

    return {"dispatch": on_dispatch, "intake": on_intake, "feedback": on_feedback}


# --------------------------------------------------------------------------------------------------------------
# 1. Access tokens
# --------------------------------------------------------------------------------------------------------------


async def test_login_returns_a_short_lived_bearer_pair_and_me_describes_the_member(
    common_settings: CommonSettings, dispatch: AppClient, demo_teams: dict[str, str]
) -> None:
    member = await new_member(common_settings, dispatch, "officer", team=demo_teams["370202-011"])

    response = await login(dispatch, member.username, member.password)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 900
    assert body["access_token"].count(".") == 2
    assert body["refresh_token"]
    assert body["refresh_token"] != member.tokens["refresh_token"]
    me = await dispatch.get("/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == member.username
    assert me.json()["role"] == "officer"
    assert me.json()["station"] == BAYI
    assert me.json()["areas"] == ["370202-011"]
    # The token's own lifetime matches what the answer says.
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE


def forged_tokens(principal: Principal) -> dict[str, str]:
    """Tokens for `principal` that are expired, meant for someone else, or not signed by dispatch's key."""
    key = private_key_object(TOKEN_PRIVATE_KEY)
    other_private, _ = generate_keypair()
    unsigned_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "expired": TokenSigner(TOKEN_PRIVATE_KEY, timedelta(minutes=15)).issue(
            principal, now=datetime.now(UTC) - timedelta(hours=1)
        ),
        "wrong audience": jwt.encode(registered_claims(principal, aud="another-api"), key, algorithm="EdDSA"),
        "wrong issuer": jwt.encode(registered_claims(principal, iss="not-quanzu"), key, algorithm="EdDSA"),
        "alg none": f"{unsigned_header}.{b64url(json.dumps(registered_claims(principal)).encode())}.",
        "other key": TokenSigner(other_private, timedelta(minutes=15)).issue(principal),
    }


def tampered_tokens(valid: str) -> dict[str, str]:
    """A genuine token changed after signing."""
    header, payload, signature = valid.split(".")
    # A character changed in the middle of the payload segment.
    i = len(payload) // 2
    flipped = payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1 :]
    # The payload rewritten to claim more (an officer becoming an admin), the signature kept.
    claims = json.loads(b64url_decode(payload))
    escalated = b64url(json.dumps({**claims, "role": "admin", "areas": []}).encode())
    return {
        "tampered payload": f"{header}.{flipped}.{signature}",
        "escalated payload": f"{header}.{escalated}.{signature}",
        "signature stripped": f"{header}.{payload}.",
        "garbage": "not.a.token",
    }


async def test_forged_expired_and_missing_tokens_are_401_on_every_service(
    common_settings: CommonSettings,
    dispatch: AppClient,
    intake: AppClient,
    feedback: AppClient,
    demo_teams: dict[str, str],
    admin_member: Member,
) -> None:
    officer = await new_member(common_settings, dispatch, "officer", team=demo_teams["370202-012"])
    check = probes(dispatch, intake, feedback)
    # The genuine tokens pass everywhere (not 401), so each 401 below is the forgery's doing.
    expected_valid = {
        "dispatch": {officer.username: 200, admin_member.username: 200},
        "intake": {officer.username: 404, admin_member.username: 404},
        "feedback": {officer.username: 403, admin_member.username: 200},
    }
    for name, probe in check.items():
        for member in (officer, admin_member):
            response = await probe(member.headers)
            assert response.status_code == expected_valid[name][member.username], (name, response.text)

    tokens = forged_tokens(await principal_of(dispatch, officer)) | tampered_tokens(officer.tokens["access_token"])
    tokens |= {f"admin's {k}": v for k, v in forged_tokens(await principal_of(dispatch, admin_member)).items()}
    for kind, token in tokens.items():
        for name, probe in check.items():
            response = await probe(bearer(token))
            assert response.status_code == 401, f"{kind} token on {name}: {response.status_code} {response.text}"
            assert_unauthorized(response)

    for name, probe in check.items():
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
            response = await probe(headers)
            assert response.status_code == 401, f"{headers} on {name}: {response.text}"
            assert_unauthorized(response)


# --------------------------------------------------------------------------------------------------------------
# 2. Refresh tokens
# --------------------------------------------------------------------------------------------------------------


async def test_refresh_rotates_and_a_replayed_refresh_token_revokes_its_whole_family(
    common_settings: CommonSettings, dispatch: AppClient, demo_areas: set[str]
) -> None:
    member = await new_member(common_settings, dispatch, "supervisor", station=BAYI)
    first = member.tokens["refresh_token"]

    rotated = await refresh(dispatch, first)

    assert rotated.status_code == 200, rotated.text
    pair = rotated.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] != first
    assert pair["access_token"] != member.tokens["access_token"]
    me = await dispatch.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == member.username

    replayed = await refresh(dispatch, first)
    assert replayed.status_code == 401, replayed.text
    assert replayed.headers["content-type"] == PROBLEM_JSON
    assert replayed.json()["error"] == "invalid_grant"
    # The replay means the token leaked: the legitimate successor is revoked with it.
    successor = await refresh(dispatch, pair["refresh_token"])
    assert successor.status_code == 401, successor.text


async def test_revoke_makes_a_refresh_token_unusable_and_leaves_other_sessions_alone(
    common_settings: CommonSettings, dispatch: AppClient, demo_areas: set[str]
) -> None:
    member = await new_member(common_settings, dispatch, "operator", station=BAYI)
    other_session = await login(dispatch, member.username, member.password)
    assert other_session.status_code == 200

    revoked = await dispatch.post("/v1/auth/revoke", data={"refresh_token": member.tokens["refresh_token"]})

    assert revoked.status_code == 204
    assert (await refresh(dispatch, member.tokens["refresh_token"])).status_code == 401
    # Another login is another family: still usable.
    assert (await refresh(dispatch, other_session.json()["refresh_token"])).status_code == 200
    # Revoking an unknown token reveals nothing (RFC 7009).
    unknown = await dispatch.post("/v1/auth/revoke", data={"refresh_token": "qzr_" + uuid.uuid4().hex})
    assert unknown.status_code == 204


# --------------------------------------------------------------------------------------------------------------
# 3. Brute force (exactly 5 failed logins: the per-address budget is shared by the whole suite)
# --------------------------------------------------------------------------------------------------------------


async def test_five_wrong_passwords_lock_the_username_but_not_other_users(
    common_settings: CommonSettings, dispatch: AppClient, demo_areas: set[str]
) -> None:
    victim = await new_member(common_settings, dispatch, "operator", station=BAYI)
    bystander = await new_member(common_settings, dispatch, "operator", station=BAYI)

    for attempt in range(5):
        wrong = await login(dispatch, victim.username, f"wrong-password-{attempt}")
        assert wrong.status_code == 401, (attempt, wrong.text)
        assert wrong.json()["error"] == "invalid_grant"

    locked = await login(dispatch, victim.username, victim.password)

    assert locked.status_code == 429, locked.text
    assert locked.headers["content-type"] == PROBLEM_JSON
    assert 1 <= int(locked.headers["retry-after"]) <= 15 * 60
    assert "access_token" not in locked.json()
    # The username is matched case-insensitively: another spelling is locked too.
    assert (await login(dispatch, victim.username.upper(), victim.password)).status_code == 429
    # Another member, from the same address, is not affected.
    assert (await login(dispatch, bystander.username, bystander.password)).status_code == 200
    # Sessions that existed before the lockout go on.
    assert (await dispatch.get("/v1/me", headers=victim.headers)).status_code == 200


# --------------------------------------------------------------------------------------------------------------
# 4. Deactivation ends every session
# --------------------------------------------------------------------------------------------------------------


async def test_deactivation_ends_access_and_refresh_tokens_on_every_service(
    common_settings: CommonSettings,
    dispatch: AppClient,
    intake: AppClient,
    feedback: AppClient,
    demo_teams: dict[str, str],
    admin_member: Member,
) -> None:
    member = await new_member(common_settings, dispatch, "officer", team=demo_teams["370202-013"])
    check = probes(dispatch, intake, feedback)
    before = {name: (await probe(member.headers)).status_code for name, probe in check.items()}
    assert before == {"dispatch": 200, "intake": 404, "feedback": 403}

    response = await dispatch.post(f"/v1/admin/members/{member.username}/deactivate", headers=admin_member.headers)

    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    for name, probe in check.items():

        async def rejected(probe: Probe = probe) -> bool:
            return (await probe(member.headers)).status_code == 401

        await wait_for(rejected, timeout=PROPAGATION_TIMEOUT_S, message=f"{name} to reject the deactivated member")
        assert_unauthorized(await probe(member.headers))
    assert (await refresh(dispatch, member.tokens["refresh_token"])).status_code == 401
    assert (await login(dispatch, member.username, member.password)).status_code == 401  # one failed login
    # Deactivating is admin-only, and an unknown member is 404.
    officer = await new_member(common_settings, dispatch, "officer", team=demo_teams["370202-013"])
    forbidden = await dispatch.post(f"/v1/admin/members/{officer.username}/deactivate", headers=officer.headers)
    assert forbidden.status_code == 403
    missing = await dispatch.post(
        f"/v1/admin/members/nobody-{uuid.uuid4().hex[:8]}/deactivate", headers=admin_member.headers
    )
    assert missing.status_code == 404


# --------------------------------------------------------------------------------------------------------------
# 5. Area scoping and masking of GET /v1/warnings/{id}
# --------------------------------------------------------------------------------------------------------------


async def test_a_warning_is_visible_masked_in_its_area_unmasked_and_logged_for_admins_and_404_elsewhere(
    common_settings: CommonSettings,
    dispatch: AppClient,
    intake: AppClient,
    demo_teams: dict[str, str],
    source: SourceCredentials,
    admin_member: Member,
) -> None:
    id_number = valid_id_number()
    subject = {"phone": "13800138000", "name": "张三", "id_number": id_number, "address": "太平角路12号"}
    warning_id = await post_warning(intake, source, area_code="370202-011", subject=subject)
    path = f"/v1/warnings/{warning_id}"
    not_found_body = (await intake.get(f"/v1/warnings/{uuid.uuid4()}", headers=admin_member.headers)).json()

    async def reader(role: str, *, team: str | None = None, station: str | None = None) -> Member:
        return await new_member(common_settings, dispatch, role, team=team, station=station)

    masked_readers = {
        "officer of the area's team": await reader("officer", team=demo_teams["370202-011"]),
        "auxiliary of the area's team": await reader("auxiliary", team=demo_teams["370202-011"]),
        "supervisor of the area's station": await reader("supervisor", station=BAYI),
        "operator of the area's station": await reader("operator", station=BAYI),
    }
    outsiders = {
        "officer of another station's area": await reader("officer", team=demo_teams["370202-021"]),
        "officer of another area of the same station": await reader("officer", team=demo_teams["370202-012"]),
        "supervisor of another station": await reader("supervisor", station=ZHONGSHAN),
        "grid worker of the area": await reader("grid_worker", team=demo_teams["370202-011"]),
        "operator of another station": await reader("operator", station=ZHONGSHAN),
    }

    for who, member in masked_readers.items():
        response = await intake.get(path, headers=member.headers)
        assert response.status_code == 200, (who, response.text)
        assert response.json()["subject"]["phone"] == "138****8000", who
        assert response.json()["subject"]["name"] == "张*", who
        for secret in (id_number, "13800138000", "张三", "太平角路12号"):
            assert secret not in response.text, (who, secret)
    for who, member in outsiders.items():
        response = await intake.get(path, headers=member.headers)
        assert response.status_code == 404, (who, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
        # Indistinguishable from an id that does not exist.
        assert {**response.json(), "instance": None} == {**not_found_body, "instance": None}, who

    own = await intake.get(path, headers=source.headers)
    assert own.status_code == 200
    assert own.json()["subject"]["phone"] == "138****8000"
    assert id_number not in own.text
    other_source = await new_source(common_settings)
    assert (await intake.get(path, headers=other_source.headers)).status_code == 404

    reason = f"复核 {uuid.uuid4().hex[:6]}"
    unmasked = await intake.get(path, params={"reason": reason}, headers=admin_member.headers)
    assert unmasked.status_code == 200, unmasked.text
    assert unmasked.json()["subject"]["phone"] == "13800138000"
    assert unmasked.json()["subject"]["id_number"] == id_number
    assert unmasked.json()["subject"]["name"] == "张三"

    log = await intake.get("/v1/admin/access-log", params={"object_id": warning_id}, headers=admin_member.headers)
    assert log.status_code == 200, log.text
    # Only the admin's unmasked read is logged; the masked reads above are not.
    [entry] = log.json()["items"]
    assert entry["object_id"] == warning_id
    assert entry["object_type"] == "warning"
    assert entry["username"] == admin_member.username
    assert entry["role"] == "admin"
    assert {"phone", "id_number", "name", "address"} <= set(entry["fields"])
    assert entry["reason"] == reason
    denied = await intake.get(
        "/v1/admin/access-log", headers=masked_readers["supervisor of the area's station"].headers
    )
    assert denied.status_code == 403
    assert denied.headers["content-type"] == PROBLEM_JSON
    assert (await intake.get("/v1/admin/access-log", headers=source.headers)).status_code == 401


# --------------------------------------------------------------------------------------------------------------
# 6. Row-level security in PostgreSQL itself, and the append-only access log
# --------------------------------------------------------------------------------------------------------------


@asynccontextmanager
async def connect(database_url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        yield conn
    finally:
        await conn.close()


async def scope_as(conn: Any, **settings: str) -> None:
    """Set scope settings for the rest of the session (not just one transaction); unset ones are reset."""
    for name in ("role", "member_id", "team_id", "station", "areas", "source"):
        await conn.execute("SELECT set_config($1, $2, false)", f"quanzu.{name}", settings.get(name, ""))


async def test_warnings_are_invisible_to_the_app_role_without_a_matching_scope(
    database_url: str, intake: AppClient, source: SourceCredentials, demo_areas: set[str]
) -> None:
    warning_id = uuid.UUID(await post_warning(intake, source, area_code="370202-011"))
    async with connect(database_url) as conn:
        assert await conn.fetchval("SELECT count(*) FROM intake.warnings") > 0  # the superuser sees them
        await conn.execute("SET ROLE quanzu_intake_app")
        assert await conn.fetchval("SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user") is False

        assert await conn.fetchval("SELECT count(*) FROM intake.warnings") == 0  # no scope at all
        await scope_as(conn, role="officer", areas="{370202-099}")
        assert await conn.fetchval("SELECT count(*) FROM intake.warnings") == 0
        await scope_as(conn, role="grid_worker", areas="{370202-011}")
        assert await conn.fetchval("SELECT count(*) FROM intake.warnings WHERE id = $1", warning_id) == 0
        await scope_as(conn, role="source", source="someone-else")
        assert await conn.fetchval("SELECT count(*) FROM intake.warnings WHERE id = $1", warning_id) == 0
        await scope_as(conn, role="officer", areas="{370202-011}")
        assert await conn.fetchval("SELECT count(*) FROM intake.warnings WHERE id = $1", warning_id) == 1
        await scope_as(conn, role="system")
        assert await conn.fetchval("SELECT count(*) FROM intake.warnings") > 0
        # Writing is held to the scope too: a member cannot change a warning even in their own area.
        await scope_as(conn, role="officer", areas="{370202-011}")
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.execute("UPDATE intake.warnings SET risk_level = 'low' WHERE id = $1", warning_id)
        await scope_as(conn, role="system")
        assert await conn.fetchval("SELECT risk_level FROM intake.warnings WHERE id = $1", warning_id) == "high"


async def test_members_are_invisible_to_the_app_role_outside_the_supervisors_station(
    database_url: str, common_settings: CommonSettings, dispatch: AppClient, demo_areas: set[str]
) -> None:
    bayi = await new_member(common_settings, dispatch, "operator", station=BAYI)
    zhongshan = await new_member(common_settings, dispatch, "operator", station=ZHONGSHAN)

    async def visible(conn: Any) -> set[str]:
        return {r["username"] for r in await conn.fetch("SELECT username FROM dispatch.members")}

    async with connect(database_url) as conn:
        await conn.execute("SET ROLE quanzu_dispatch_app")
        assert await conn.fetchval("SELECT count(*) FROM dispatch.members") == 0  # no scope at all
        assert await conn.fetchval("SELECT count(*) FROM dispatch.refresh_tokens") == 0
        await scope_as(conn, role="supervisor", station=ZHONGSHAN, member_id=str(uuid.uuid4()))
        seen = await visible(conn)
        assert bayi.username not in seen
        assert zhongshan.username in seen
        await scope_as(conn, role="supervisor", station=BAYI, member_id=str(uuid.uuid4()))
        assert bayi.username in await visible(conn)
        # A station setting without the supervisor role sees nobody but oneself.
        await scope_as(conn, role="operator", station=BAYI, member_id=str(uuid.uuid4()))
        assert await visible(conn) == set()
        # Nor can a scoped member write members (WITH CHECK: system and admin only).
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO dispatch.members (id, username, display_name, role, password_hash, active,"
                " session_epoch, created_at) VALUES ($1, $2, 'x', 'admin', 'x', true, 0, now())",
                uuid.uuid4(),
                f"intruder-{uuid.uuid4().hex[:8]}",
            )


@pytest.mark.parametrize("schema", ["intake", "dispatch", "feedback"])
async def test_the_access_log_is_append_only_even_for_the_superuser(
    database_url: str, schema: str, intake: AppClient, dispatch: AppClient, feedback: AppClient
) -> None:
    async with connect(database_url) as conn:
        entry_id = await conn.fetchval(
            f"INSERT INTO {schema}.access_log (member_id, username, role, object_type, object_id, fields, reason)"
            " VALUES ($1, 'auditor', 'admin', 'warning', $2, ARRAY['phone'], 'test') RETURNING id",
            uuid.uuid4(),
            uuid.uuid4(),
        )

        with pytest.raises(asyncpg.exceptions.RaiseError, match="append-only"):
            await conn.execute(f"UPDATE {schema}.access_log SET reason = 'covered up' WHERE id = $1", entry_id)
        with pytest.raises(asyncpg.exceptions.RaiseError, match="kept at least"):
            await conn.execute(f"DELETE FROM {schema}.access_log WHERE id = $1", entry_id)
        with pytest.raises(asyncpg.exceptions.PostgresError):
            await conn.execute(f"DELETE FROM {schema}.access_log")

        assert await conn.fetchval(f"SELECT reason FROM {schema}.access_log WHERE id = $1", entry_id) == "test"
        # The service's role without a scope can neither read nor add entries.
        await conn.execute(f"SET ROLE quanzu_{schema}_app")
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.access_log") == 0
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.execute(
                f"INSERT INTO {schema}.access_log (member_id, username, role, object_type, object_id, fields,"
                " reason) VALUES ($1, 'forger', 'admin', 'warning', $2, ARRAY['phone'], 'forged')",
                uuid.uuid4(),
                uuid.uuid4(),
            )


# --------------------------------------------------------------------------------------------------------------
# 7. Hostile input: SQL injection strings are data, a NUL character is a client error
# --------------------------------------------------------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE intake.warnings; --",
    "' OR '1'='1",
    "Robert'); DELETE FROM dispatch.members; --",
    "$$; SELECT pg_sleep(0); $$",
    '" OR ""="',
]

# A record field holding a text value, as (path into the record, how to put a value there).
TEXT_FIELDS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "external_id": lambda r, v: r.__setitem__("external_id", v),
    "subject.name": lambda r, v: r["subject"].__setitem__("name", v),
    "subject.address": lambda r, v: r["subject"].__setitem__("address", v),
    "subject.phone": lambda r, v: r["subject"].__setitem__("phone", v),
    "subject.id_number": lambda r, v: r["subject"].__setitem__("id_number", v),
    "area_code": lambda r, v: r.__setitem__("area_code", v),
    "evidence.suspect_numbers": lambda r, v: r["evidence"].__setitem__("suspect_numbers", [v]),
    "evidence.accounts": lambda r, v: r["evidence"].__setitem__("accounts", [v]),
    "evidence.urls": lambda r, v: r["evidence"].__setitem__("urls", [v]),
    "evidence.apps": lambda r, v: r["evidence"].__setitem__("apps", [v]),
}


def stored_value(warning: dict[str, Any], field: str) -> Any:
    head, _, tail = field.partition(".")
    value = warning[head][tail] if tail else warning[head]
    return value[0] if head == "evidence" else value


async def test_sql_injection_strings_in_warning_fields_are_stored_literally_or_rejected(
    intake: AppClient, source: SourceCredentials, admin_member: Member, demo_areas: set[str]
) -> None:
    async with lenient(intake) as client:
        for payload in INJECTIONS:
            for field, put in TEXT_FIELDS.items():
                record = warning_record(area_code="370202-011")
                put(record, payload)
                response = await client.post("/v1/warnings", json=record, headers=source.headers)
                # Not a phone or ID number, or too long for an area code: rejected for what it is, never a 5xx.
                invalid = field in ("subject.phone", "subject.id_number") or (
                    field == "area_code" and len(payload) > 32
                )
                if invalid:
                    assert response.status_code == 422, (field, payload, response.status_code, response.text)
                    assert field in {e["field"] for e in response.json()["errors"]}
                    continue
                assert response.status_code == 202, (field, payload, response.status_code, response.text)
                back = await client.get(f"/v1/warnings/{response.json()['id']}", headers=admin_member.headers)
                assert back.status_code == 200, back.text
                assert stored_value(back.json(), field) == payload, (field, payload)
    await assert_tables_intact(intake, source)


async def assert_tables_intact(intake: AppClient, source: SourceCredentials) -> None:
    assert (await intake.post("/v1/warnings", json=warning_record(), headers=source.headers)).status_code == 202


async def test_sql_injection_strings_in_login_are_just_wrong_credentials(
    common_settings: CommonSettings, dispatch: AppClient, demo_areas: set[str]
) -> None:
    member = await new_member(common_settings, dispatch, "operator", station=BAYI)
    async with lenient(dispatch) as client:
        attempts = [  # three failed logins in all
            ("' OR '1'='1", "' OR '1'='1"),
            (f"{member.username}' --", "anything-at-all"),
            (member.username, "' OR '1'='1' --"),
        ]
        for username, password in attempts:
            response = await client.post(
                "/v1/auth/token", data={"grant_type": "password", "username": username, "password": password}
            )
            assert response.status_code == 401, (username, password, response.status_code, response.text)
            assert "access_token" not in response.json()
    assert (await login(dispatch, member.username, member.password)).status_code == 200


async def test_sql_injection_strings_in_member_and_team_creation_are_data_or_rejected(
    dispatch: AppClient, admin_member: Member, demo_teams: dict[str, str]
) -> None:
    async with lenient(dispatch) as client:
        for payload in INJECTIONS:
            username = f"inj-{uuid.uuid4().hex[:8]}"
            members = {
                "username": {"username": payload, "name": "x", "role": "officer", "team": demo_teams["370202-011"]},
                "name": {"username": username, "name": payload, "role": "officer", "team": demo_teams["370202-011"]},
                "team": {"username": f"{username}t", "name": "x", "role": "officer", "team": payload},
                "station": {"username": f"{username}s", "name": "x", "role": "supervisor", "station": payload},
                "password": {"username": f"{username}p", "name": "x", "role": "operator", "station": BAYI,
                             "password": f"{payload}{payload}"},
            }  # fmt: skip
            expected = {"username": 422, "name": 201, "team": 409, "station": 409, "password": 201}
            for field, body in members.items():
                response = await client.post("/v1/admin/members", json=body, headers=admin_member.headers)
                assert response.status_code == expected[field], (field, payload, response.text)
            created = await client.post("/v1/admin/members", json=members["name"], headers=admin_member.headers)
            assert created.status_code == 409  # the same username again: the first one was stored
            listed = await client.get("/v1/admin/members", headers=admin_member.headers)
            assert {m["username"]: m["display_name"] for m in listed.json()}[username] == payload
            password = members["password"]
            assert (await login(dispatch, password["username"], password["password"])).status_code == 200

            team_name = f"{payload} {uuid.uuid4().hex[:6]}"
            team = await client.post(
                "/v1/admin/teams", json={"name": team_name, "area_code": "370202-011"}, headers=admin_member.headers
            )
            assert team.status_code == 201, team.text
            assert team.json()["name"] == team_name
            bad_area = await client.post(
                "/v1/admin/teams",
                json={"name": f"t-{uuid.uuid4().hex}", "area_code": payload},
                headers=admin_member.headers,
            )
            assert bad_area.status_code == 422, bad_area.text
    still = await dispatch.get("/v1/admin/members", headers=admin_member.headers)
    assert still.status_code == 200
    assert admin_member.username in {m["username"] for m in still.json()}


NUL = "a\x00b"
# PostgreSQL cannot store U+0000 in text (SQLSTATE 22021) or jsonb (22P05): every entry point must refuse it.
NUL_FIELDS = TEXT_FIELDS


@pytest.mark.parametrize("field", NUL_FIELDS)
async def test_a_nul_character_in_a_warning_field_is_a_client_error(
    intake: AppClient, source: SourceCredentials, demo_areas: set[str], field: str
) -> None:
    record = warning_record()
    TEXT_FIELDS[field](record, NUL)
    async with lenient(intake) as client:
        response = await client.post("/v1/warnings", json=record, headers=source.headers)
    assert response.status_code == 422, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM_JSON
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()
    await assert_tables_intact(intake, source)


async def test_a_nul_character_in_one_batch_record_rejects_that_record_only(
    intake: AppClient, source: SourceCredentials, demo_areas: set[str]
) -> None:
    batch = {"warnings": [warning_record(), warning_record(subject={"phone": "13800138000", "name": NUL})]}
    async with lenient(intake) as client:
        response = await client.post("/v1/warnings/batch", json=batch, headers=source.headers)
    assert response.status_code == 200, (response.status_code, response.text)
    assert [r["code"] for r in response.json()["results"]] == [202, 422]


async def test_a_nul_character_in_an_admins_read_reason_is_a_client_error(
    intake: AppClient, source: SourceCredentials, admin_member: Member, demo_areas: set[str]
) -> None:
    warning_id = await post_warning(intake, source)
    async with lenient(intake) as client:
        response = await client.get(f"/v1/warnings/{warning_id}", params={"reason": NUL}, headers=admin_member.headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


@pytest.mark.parametrize("field", ["username", "password"])
async def test_a_nul_character_in_login_is_a_client_error(
    common_settings: CommonSettings, dispatch: AppClient, demo_areas: set[str], field: str
) -> None:
    member = await new_member(common_settings, dispatch, "operator", station=BAYI)
    data = {"grant_type": "password", "username": member.username, "password": member.password}
    data[field] = data[field] + "\x00"
    async with lenient(dispatch) as client:
        response = await client.post("/v1/auth/token", data=data)  # at most one failed login
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert "access_token" not in response.json()


@pytest.mark.parametrize("field", ["name", "team"])
async def test_a_nul_character_in_member_creation_is_a_client_error(
    dispatch: AppClient, admin_member: Member, demo_teams: dict[str, str], field: str
) -> None:
    body = {"username": f"nul-{uuid.uuid4().hex[:8]}", "name": "x", "role": "officer", "team": demo_teams["370202-011"]}
    body[field] = NUL
    async with lenient(dispatch) as client:
        response = await client.post("/v1/admin/members", json=body, headers=admin_member.headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


# --------------------------------------------------------------------------------------------------------------
# 8. Source API key rotation through the admin REST of intake
# --------------------------------------------------------------------------------------------------------------


async def test_source_keys_rotate_with_two_valid_at_once_and_a_revoked_key_stops_working(
    intake: AppClient, admin_member: Member, demo_areas: set[str]
) -> None:
    name = f"sec-{uuid.uuid4().hex[:10]}"
    created = await intake.post(
        "/v1/admin/sources", json={"name": name, "rate_per_s": 1000}, headers=admin_member.headers
    )
    assert created.status_code == 201, created.text
    key1, prefix1 = created.json()["api_key"], created.json()["key_prefix"]
    assert key1.startswith(prefix1)
    rotated = await intake.post(f"/v1/admin/sources/{name}/keys", headers=admin_member.headers)
    assert rotated.status_code == 201, rotated.text
    key2, prefix2 = rotated.json()["api_key"], rotated.json()["key_prefix"]
    assert key2 != key1
    assert prefix2 != prefix1
    first, second = SourceCredentials(name, key1), SourceCredentials(name, key2)

    for credentials in (first, second):
        await post_warning(intake, credentials)
    assert (await intake.post(f"/v1/admin/sources/{name}/keys", headers=admin_member.headers)).status_code == 409
    listed = await intake.get("/v1/admin/sources", headers=admin_member.headers)
    assert {s["name"]: sorted(s["key_prefixes"]) for s in listed.json()}[name] == sorted([prefix1, prefix2])

    revoked = await intake.delete(f"/v1/admin/sources/{name}/keys/{prefix1}", headers=admin_member.headers)

    assert revoked.status_code == 204, revoked.text
    probe = f"/v1/warnings/{uuid.uuid4()}"  # 404 while the key is valid, 401 once it is not

    async def key1_refused() -> bool:
        return (await intake.get(probe, headers=first.headers)).status_code == 401

    await wait_for(key1_refused, timeout=30, message="the revoked key to stop working")
    refused = await intake.post("/v1/warnings", json=warning_record(), headers=first.headers)
    assert_unauthorized(refused)
    refused_as_header = await intake.post("/v1/warnings", json=warning_record(), headers={"X-API-Key": key1})
    assert refused_as_header.status_code == 401
    await post_warning(intake, second)
    # Revoking again, or revoking for another source, finds no such key; with one key left, rotating works again.
    again = await intake.delete(f"/v1/admin/sources/{name}/keys/{prefix1}", headers=admin_member.headers)
    assert again.status_code == 404
    assert (await intake.post(f"/v1/admin/sources/{name}/keys", headers=admin_member.headers)).status_code == 201


async def test_source_administration_is_for_admins_only(
    common_settings: CommonSettings,
    intake: AppClient,
    dispatch: AppClient,
    source: SourceCredentials,
    demo_areas: set[str],
) -> None:
    supervisor = await new_member(common_settings, dispatch, "supervisor", station=BAYI)
    body = {"name": f"sec-{uuid.uuid4().hex[:10]}"}
    assert (await intake.post("/v1/admin/sources", json=body, headers=supervisor.headers)).status_code == 403
    assert (await intake.post("/v1/admin/sources", json=body, headers=source.headers)).status_code == 401
    assert (await intake.post(f"/v1/admin/sources/{source.name}/keys", headers=source.headers)).status_code == 401
    assert (await intake.get("/v1/admin/sources", headers=supervisor.headers)).status_code == 403
