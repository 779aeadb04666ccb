from __future__ import annotations

from fastapi import APIRouter

from services.dispatch.deps import MemberSessionDep
from services.dispatch.teams import repository, service
from services.dispatch.teams.models import TeamCreate, TeamPublic
from shared.deps import AdminDep
from shared.problems import Problem

router = APIRouter(prefix="/v1/admin/teams", tags=["admin"])


@router.post("", status_code=201, response_model=TeamPublic)
async def add_team(data: TeamCreate, admin: AdminDep, session: MemberSessionDep) -> TeamPublic:
    try:
        team = await service.add_team(session, data)
    except service.TeamError as exc:
        errors = [{"field": exc.field, "message": str(exc)}]
        raise Problem(409, "Conflict", str(exc), type="team-conflict", errors=errors) from None
    return TeamPublic.model_validate(team, from_attributes=True)


@router.get("", response_model=list[TeamPublic])
async def list_teams(admin: AdminDep, session: MemberSessionDep) -> list[TeamPublic]:
    return [TeamPublic.model_validate(t, from_attributes=True) for t in await repository.list_all(session)]
