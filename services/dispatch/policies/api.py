"""Admin REST for policies: the same as `quanzu policy set` / `quanzu policy show`."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.dispatch.deps import MemberSessionDep
from services.dispatch.policies import service
from services.dispatch.policies.models import EffectivePolicy
from services.dispatch.policies.policy import PolicyFile
from shared.deps import AdminDep
from shared.problems import Problem

router = APIRouter(prefix="/v1/admin/policies", tags=["admin"])


class PolicySet(BaseModel):
    scope: str
    version: int
    changed: bool


@router.put("/{area_code}", response_model=PolicySet)
async def set_policy(area_code: str, file: PolicyFile, admin: AdminDep, session: MemberSessionDep) -> PolicySet:
    """Set the policy of an area (or `default`, the district's). Omitted settings inherit the default; cases
    already open keep the version they started under."""
    try:
        version, changed = await service.set_policy(session, area_code, file, by=admin.username)
    except service.PolicyError as exc:
        raise Problem(404, "Not found", str(exc), type="not-found") from None
    return PolicySet(scope=version.scope, version=version.version, changed=changed)


@router.get("/{area_code}", response_model=EffectivePolicy)
async def show_policy(area_code: str, admin: AdminDep, session: MemberSessionDep) -> EffectivePolicy:
    try:
        return await service.effective(session, area_code)
    except service.PolicyError as exc:
        raise Problem(404, "Not found", str(exc), type="not-found") from None
