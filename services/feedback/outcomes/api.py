"""POST /v1/outcomes: what happened when a member acted on a task (contract §4)."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import JSONResponse

from services.feedback.db import IDEMPOTENCY
from services.feedback.deps import MemberSessionDep
from services.feedback.outcomes import service
from services.feedback.outcomes.models import OutcomeCreate, OutcomePublic
from shared import idempotency
from shared.deps import PrincipalDep
from shared.problems import Problem

router = APIRouter(prefix="/v1/outcomes", tags=["outcomes"])


@router.post("", status_code=201, response_model=OutcomePublic)
async def record_outcome(
    request: Request,
    data: OutcomeCreate,
    principal: PrincipalDep,
    session: MemberSessionDep,
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Record the outcome of a task you may act on; one per task. To change it, send a correction: the same body
    with `corrects` (the current outcome's id) and `correction_reason`; the original is kept. A retry with the
    same Idempotency-Key gets the first answer. Dispatch acts on it (next attempt, escalation, closure) from
    feedback.outcomes."""
    print_ = idempotency.fingerprint("POST", request.url.path, data.model_dump(mode="json"))
    stored = await idempotency.replay(session, IDEMPOTENCY, principal.member_id, key, print_)
    if stored is not None:
        return JSONResponse(stored[1], stored[0])
    try:
        outcome = await service.record(session, principal, data, datetime.now(UTC))
    except service.NotVisible:
        raise Problem(404, "Not found", "No such task for you.", type="not-found") from None
    except service.Mismatch as exc:
        raise Problem(
            422, "Invalid request", str(exc), type="validation", errors=[{"field": exc.field, "message": str(exc)}]
        ) from None
    except service.AlreadyRecorded as exc:
        raise Problem(
            409, "Conflict", str(exc), type="outcome-exists", extra={"outcome_id": str(exc.outcome.id)}
        ) from None
    body = OutcomePublic.model_validate(outcome, from_attributes=True).model_dump(mode="json")
    await idempotency.remember(session, IDEMPOTENCY, principal.member_id, key, print_, 201, body)
    return JSONResponse(body, 201)


@router.get("", response_model=list[OutcomePublic])
async def outcomes_of_task(
    session: MemberSessionDep, task_id: Annotated[uuid.UUID, Query(description="the task")]
) -> list[OutcomePublic]:
    """A task's outcomes, the original first: who recorded or corrected what, and why."""
    try:
        found = await service.history(session, task_id)
    except service.NotVisible:
        raise Problem(404, "Not found", "No such task for you.", type="not-found") from None
    return [OutcomePublic.model_validate(o, from_attributes=True) for o in found]
