"""Cases for supervisors and admins: the timeline of one case, the unassigned queue, and assigning it."""

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from services.dispatch.areas.models import Area
from services.dispatch.cases import repository, service
from services.dispatch.cases.models import Case, TransitionPublic
from services.dispatch.db import ACCESS_LOG
from services.dispatch.deps import MemberSessionDep, MemberSnapshotDep, StateDep
from services.dispatch.tasks import repository as tasks
from services.dispatch.tasks.api import task_public
from services.dispatch.tasks.models import TaskPublic
from shared import access_log
from shared.auth import Principal
from shared.deps import require_roles
from shared.personal import mask_subject
from shared.problems import Problem

router = APIRouter(prefix="/v1/cases", tags=["cases"])
SUPERVISING = Depends(require_roles("supervisor", "admin"))


class CaseWarningPublic(BaseModel):
    warning_id: uuid.UUID
    source: str
    risk_level: str
    received_at: datetime


class CasePublic(BaseModel):
    id: uuid.UUID
    state: str
    closure: str | None
    area_code: str | None
    station: str | None
    street: str | None
    risk_level: str
    fraud_type: str
    in_progress: bool
    rewarned: bool
    subject: dict[str, Any]
    opened_at: datetime
    first_contact_at: datetime | None
    closed_at: datetime | None
    policy: dict[str, Any]
    warnings: list[CaseWarningPublic]
    tasks: list[TaskPublic]
    transitions: list[TransitionPublic]


class Assignment(BaseModel):
    area_code: str = Field(min_length=1, max_length=32)


async def _visible(session: MemberSessionDep, case_id: uuid.UUID, *, lock: bool = False) -> Case:
    case = await repository.get(session, case_id, lock=lock)
    if case is None:
        raise Problem(404, "Not found", "No such case.", type="not-found")
    return case


async def _case_public(session: MemberSessionDep, case: Case, principal: Principal) -> CasePublic:
    warnings = await repository.warnings_of(session, case.id)
    ids = [w.warning_id for w in warnings]
    subject = case.subject
    if principal.is_admin and any(subject.get(f) for f in ("phone", "name", "id_number", "address")):
        await access_log.record(
            session, ACCESS_LOG, principal, object_type="case", object_id=case.id, case_id=case.id,
            fields=[f for f in ("phone", "name", "id_number", "address") if subject.get(f)], reason="case review",
        )  # fmt: skip
    else:
        subject = mask_subject(subject)
    return CasePublic(
        **case.model_dump(exclude={"subject", "policy"}),
        subject=subject,
        policy=case.policy,
        warnings=[CaseWarningPublic.model_validate(w, from_attributes=True) for w in warnings],
        tasks=[task_public(t, case, ids) for t in await tasks.of_case(session, case.id)],
        transitions=[
            TransitionPublic.model_validate(t, from_attributes=True)
            for t in await repository.transitions(session, case.id)
        ],
    )


@router.get("/{case_id}", response_model=CasePublic)
async def get_case(case_id: uuid.UUID, session: MemberSnapshotDep, principal: Principal = SUPERVISING) -> CasePublic:
    """The case with its warnings, tasks and every transition (who or what, when, why)."""
    return await _case_public(session, await _visible(session, case_id), principal)


@router.post("/{case_id}/assign", response_model=CasePublic)
async def assign(
    case_id: uuid.UUID,
    body: Assignment,
    state: StateDep,
    session: MemberSessionDep,
    principal: Principal = SUPERVISING,
) -> CasePublic:
    """Take a case out of the district's unassigned queue: give it a police area; its calls and visits start."""
    case = await _visible(session, case_id, lock=True)
    area = await session.get(Area, body.area_code)
    if area is None or not area.active:
        raise Problem(
            422, "Invalid request", f"no active area {body.area_code!r}", type="validation",
            errors=[{"field": "area_code", "message": "is not an active area in the registry"}],
        )  # fmt: skip
    if principal.role == "supervisor" and area.station != principal.station:
        raise Problem(403, "Forbidden", "A supervisor assigns cases to their own station's areas.", type="forbidden")
    try:
        await service.assign(session, case, area, state.notifier, datetime.now(UTC), actor=principal.username)
    except service.FlowError as exc:
        raise Problem(409, "Conflict", str(exc), type="case-state") from None
    return await _case_public(session, case, principal)
