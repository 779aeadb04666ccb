"""POST /v1/auth/token (OAuth2 password and refresh_token grants), POST /v1/auth/revoke, GET /v1/me."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel
from starlette.responses import Response

from services.dispatch.auth import service
from services.dispatch.auth.models import TokenResponse
from services.dispatch.deps import StateDep, SystemSessionDep
from shared.deps import PrincipalDep
from shared.problems import Problem

router = APIRouter(tags=["auth"])


def _denied(denied: service.Denied) -> Response:
    if denied.retry_after is not None:
        return Problem(
            429,
            "Too many requests",
            denied.reason,
            type="login-throttled",
            headers={"Retry-After": str(max(1, int(denied.retry_after + 0.999)))},
        ).response("/v1/auth/token")
    return Problem(401, "Unauthorized", denied.reason, type="invalid-grant", extra={"error": "invalid_grant"}).response(
        "/v1/auth/token"
    )


@router.post("/v1/auth/token", response_model=TokenResponse)
async def token(
    request: Request,
    state: StateDep,
    session: SystemSessionDep,
    grant_type: Annotated[str, Form(max_length=32)] = "password",
    username: Annotated[str | None, Form(max_length=64)] = None,
    password: Annotated[str | None, Form(max_length=256)] = None,
    refresh_token: Annotated[str | None, Form(max_length=200)] = None,
) -> Any:
    """Log in (grant_type=password) or exchange a refresh token (grant_type=refresh_token).

    Failures are answered after the transaction commits, so failed attempts count toward the lockout.
    """
    refresh_ttl = timedelta(seconds=state.settings.refresh_token_ttl_s)
    if grant_type == "password":
        if not username or not password:
            raise _missing("username and password")
        client = request.client.host if request.client else "unknown"
        result = await service.login(session, username, password, client, signer=state.signer, refresh_ttl=refresh_ttl)
    elif grant_type == "refresh_token":
        if not refresh_token:
            raise _missing("refresh_token")
        result = await service.refresh(session, refresh_token, signer=state.signer, refresh_ttl=refresh_ttl)
    else:
        raise Problem(
            400,
            "Unsupported grant type",
            "Use grant_type=password or grant_type=refresh_token.",
            type="unsupported-grant-type",
            extra={"error": "unsupported_grant_type"},
            errors=[{"field": "grant_type", "message": "must be password or refresh_token"}],
        )
    return _denied(result) if isinstance(result, service.Denied) else result


def _missing(fields: str) -> Problem:
    return Problem(
        400,
        "Invalid request",
        f"This grant needs {fields}.",
        type="invalid-request",
        extra={"error": "invalid_request"},
        errors=[{"field": f, "message": "Field required"} for f in fields.split(" and ")],
    )


@router.post("/v1/auth/revoke", status_code=204)
async def revoke(session: SystemSessionDep, refresh_token: Annotated[str, Form(max_length=200)]) -> Response:
    """Log out: the refresh token and every token of its family stop working (RFC 7009: always 204)."""
    await service.revoke(session, refresh_token)
    return Response(status_code=204)


class Me(BaseModel):
    member_id: str
    username: str
    role: str
    station: str | None
    team_id: str | None
    areas: list[str]


@router.get("/v1/me", response_model=Me)
async def me(principal: PrincipalDep) -> Me:
    return Me(
        member_id=str(principal.member_id),
        username=principal.username,
        role=principal.role,
        station=principal.station,
        team_id=str(principal.team_id) if principal.team_id else None,
        areas=sorted(principal.areas),
    )
