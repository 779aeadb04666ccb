"""Per-area policies: set a file (a new version unless unchanged), and show what a case would get."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas.models import Area
from services.dispatch.policies import repository
from services.dispatch.policies.models import DEFAULT_SCOPE, EffectivePolicy, PolicyPublic, PolicyVersion
from services.dispatch.policies.policy import PolicyFile, PolicyValues, resolve
from shared.events import RISK_LEVELS


class PolicyError(Exception):
    pass


async def set_policy(session: AsyncSession, scope: str, file: PolicyFile, *, by: str) -> tuple[PolicyVersion, bool]:
    """Store `file` for `scope` (an area code or "default"); returns (version in force, whether it is new)."""
    if scope != DEFAULT_SCOPE and await session.get(Area, scope) is None:
        raise PolicyError(f"no area {scope!r} in the registry")
    # Serialise writers of one scope, so two concurrent sets cannot take the same version number.
    await (await session.connection()).execute(
        text("SELECT pg_advisory_xact_lock(hashtext('quanzu-policy-' || :scope))"), {"scope": scope}
    )
    body = file.model_dump(exclude_none=True, exclude_defaults=False)
    if not body.get("by_risk"):
        body.pop("by_risk", None)
    current = await repository.latest(session, scope)
    if current is not None and current.body == body:
        return current, False
    version = PolicyVersion(scope=scope, version=(current.version + 1) if current else 1, body=body, created_by=by)
    return await repository.add(session, version), True


def values_of(default: PolicyVersion | None, area: PolicyVersion | None, risk: str) -> PolicyValues:
    """What a case at `risk` gets from these versions: built-in defaults, then the district's file (and its
    override for `risk`), then the area's file (and its override)."""
    risk_level: Any = risk
    base = resolve(PolicyValues(), PolicyFile.model_validate(default.body), risk_level) if default else PolicyValues()
    return resolve(base, PolicyFile.model_validate(area.body) if area else None, risk_level)


async def effective(session: AsyncSession, area_code: str) -> EffectivePolicy:
    if area_code != DEFAULT_SCOPE and await session.get(Area, area_code) is None:
        raise PolicyError(f"no area {area_code!r} in the registry")
    default, area = await repository.in_force(session, area_code if area_code != DEFAULT_SCOPE else None)
    return EffectivePolicy(
        area_code=area_code,
        area=PolicyPublic.model_validate(area, from_attributes=True) if area else None,
        default=PolicyPublic.model_validate(default, from_attributes=True) if default else None,
        effective={risk: values_of(default, area, risk).model_dump() for risk in RISK_LEVELS},
    )
