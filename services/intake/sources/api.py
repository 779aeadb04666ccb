"""Admin REST for upstream sources: register, rotate keys (two valid during a rotation), revoke."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from services.intake.deps import SessionDep
from services.intake.sources import repository, service
from services.intake.sources.models import SourceCreate
from shared.deps import AdminDep
from shared.problems import Problem

router = APIRouter(prefix="/v1/admin/sources", tags=["admin"])


class SourceWithKey(BaseModel):
    name: str
    rate_per_s: float
    api_key: str
    key_prefix: str


class NewKey(BaseModel):
    api_key: str
    key_prefix: str


class SourceListed(BaseModel):
    name: str
    rate_per_s: float
    active: bool
    key_prefixes: list[str]


def _conflict(exc: service.SourceError) -> Problem:
    return Problem(409, "Conflict", str(exc), type="source-conflict")


@router.post("", status_code=201, response_model=SourceWithKey)
async def add_source(data: SourceCreate, admin: AdminDep, session: SessionDep) -> SourceWithKey:
    """Register an upstream system. The API key is in this answer only; only its hash is stored."""
    try:
        source, key = await service.add_source(session, data)
    except service.SourceError as exc:
        raise _conflict(exc) from None
    return SourceWithKey(name=source.name, rate_per_s=source.rate_per_s, api_key=key, key_prefix=key[:12])


@router.get("", response_model=list[SourceListed])
async def list_sources(admin: AdminDep, session: SessionDep) -> list[SourceListed]:
    return [
        SourceListed(
            name=s.name,
            rate_per_s=s.rate_per_s,
            active=s.revoked_at is None,
            key_prefixes=await service.active_key_prefixes(session, s),
        )
        for s in await repository.list_all(session)
    ]


@router.post("/{name}/keys", status_code=201, response_model=NewKey)
async def rotate_key(name: str, admin: AdminDep, session: SessionDep) -> NewKey:
    """Add a second key; revoke the old one once the upstream system uses the new one."""
    try:
        key, prefix = await service.rotate_key(session, name)
    except service.SourceError as exc:
        raise _conflict(exc) from None
    return NewKey(api_key=key, key_prefix=prefix)


@router.delete("/{name}/keys/{key_prefix}", status_code=204)
async def revoke_key(name: str, key_prefix: str, admin: AdminDep, session: SessionDep) -> Response:
    try:
        await service.revoke_key(session, name, key_prefix)
    except service.SourceError as exc:
        raise Problem(404, "Not found", str(exc), type="not-found") from None
    return Response(status_code=204)


@router.delete("/{name}", status_code=204)
async def revoke_source(name: str, admin: AdminDep, session: SessionDep) -> Response:
    try:
        await service.revoke_source(session, name)
    except service.SourceError as exc:
        raise Problem(404, "Not found", str(exc), type="not-found") from None
    return Response(status_code=204)
