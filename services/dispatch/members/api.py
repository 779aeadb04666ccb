from __future__ import annotations

from fastapi import APIRouter

from services.dispatch.deps import MemberSessionDep
from services.dispatch.members import repository, service
from services.dispatch.members.models import MemberCreate, MemberCreated, MemberPublic
from shared.deps import AdminDep
from shared.problems import Problem

router = APIRouter(prefix="/v1/admin/members", tags=["admin"])


@router.post("", status_code=201, response_model=MemberCreated)
async def add_member(data: MemberCreate, admin: AdminDep, session: MemberSessionDep) -> MemberCreated:
    """Create a member. Without `password`, the answer carries a one-time password, shown only now."""
    try:
        member, generated = await service.add_member(session, data)
    except service.MemberError as exc:
        title, kind = ("Conflict", "member-conflict") if exc.status == 409 else ("Invalid request", "validation")
        errors = [{"field": exc.field, "message": str(exc)}]
        raise Problem(exc.status, title, str(exc), type=kind, errors=errors) from None
    public = MemberPublic.model_validate(member, from_attributes=True)
    return MemberCreated(**public.model_dump(), one_time_password=generated)


@router.get("", response_model=list[MemberPublic])
async def list_members(admin: AdminDep, session: MemberSessionDep) -> list[MemberPublic]:
    return [MemberPublic.model_validate(m, from_attributes=True) for m in await repository.list_visible(session)]


@router.post("/{username}/deactivate", response_model=MemberPublic)
async def deactivate(username: str, admin: AdminDep, session: MemberSessionDep) -> MemberPublic:
    """Deactivate a member: their refresh tokens are revoked and their access tokens stop working."""
    try:
        member = await service.deactivate(session, username)
    except service.MemberError as exc:
        raise Problem(404, "Not found", str(exc), type="not-found") from None
    return MemberPublic.model_validate(member, from_attributes=True)
