"""Tasks for field teams and operators, from their phones (contract §4). Thin: scope, call the flow, answer."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import JSONResponse

from services.dispatch.cases import repository as cases
from services.dispatch.cases import service as flow
from services.dispatch.cases.models import Case
from services.dispatch.db import ACCESS_LOG, IDEMPOTENCY
from services.dispatch.deps import MemberSessionDep, StateDep
from services.dispatch.tasks import repository
from services.dispatch.tasks.models import Arrival, Decline, Task, TaskPublic, TaskSubject
from shared import access_log, idempotency
from shared.auth import Principal
from shared.deps import PrincipalDep
from shared.instants import in_utc
from shared.pagination import Cursor, Limit, Page, bad_cursor, decode_cursor, encode_cursor
from shared.personal import mask_name, mask_phone
from shared.problems import Problem

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
# Who gets the full phone number on GET /v1/tasks/{id}: those who must call or visit (and admins).
ACTS_ON = {"call": {"operator"}, "visit": {"officer", "auxiliary"}, "sms": set(), "follow_up": set()}


def task_public(task: Task, case: Case, warning_ids: list[uuid.UUID], *, full_phone: bool = False) -> TaskPublic:
    phone = case.subject.get("phone")
    return TaskPublic(
        id=task.id, case_id=task.case_id, warning_ids=warning_ids, tier=task.tier, attempt=task.attempt,
        status=task.status, area_code=task.area_code, team_id=task.team_id, station=task.station,
        risk_level=case.risk_level, fraud_type=case.fraud_type, in_progress=case.in_progress,
        subject=TaskSubject(phone=phone if full_phone else mask_phone(phone), name=mask_name(case.subject.get("name"))),
        created_at=task.created_at, ack_due_at=task.ack_due_at, due_at=task.due_at, acked_at=task.acked_at,
    )  # fmt: skip


async def _visible(session: AsyncSession, task_id: uuid.UUID, *, lock: bool = False) -> tuple[Task, Case]:
    # row-level security decides; another area's task is simply not there (404, so ids cannot be probed)
    # The member's action changes the task only: its case is read, not locked.
    found = await repository.with_case(session, task_id, lock=(Task,) if lock else ())
    if found is None:
        raise Problem(404, "Not found", "No such task.", type="not-found")
    return found


@router.get("", response_model=Page[TaskPublic])
async def list_tasks(
    principal: PrincipalDep,
    session: MemberSessionDep,
    status: Literal["open", "done", "all"] = "open",
    tier: Literal["sms", "call", "visit", "follow_up"] | None = None,
    case_id: uuid.UUID | None = None,
    warning_id: uuid.UUID | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TaskPublic]:
    """The caller's tasks, newest first; phones masked."""
    after = None
    if (raw := decode_cursor(cursor)) is not None:
        try:
            created, last = raw.split("|", 1)
            created_at = datetime.fromisoformat(created)
            # Only this API's own cursors: an aware time that exists in UTC (else a 500 in the query)
            if created_at.tzinfo is None:
                raise ValueError(created)
            after = (in_utc(created_at), uuid.UUID(last))
        except ValueError:
            raise bad_cursor() from None
    rows = await repository.visible(
        session, status=status, tier=tier, case_id=case_id, warning_id=warning_id, after=after, limit=limit + 1
    )
    warnings = await cases.warning_ids(session, list({c.id for _, c in rows}))
    items = [task_public(t, c, warnings.get(c.id, [])) for t, c in rows[:limit]]
    last_task = rows[limit - 1][0] if len(rows) > limit else None
    next_cursor = encode_cursor(f"{last_task.created_at.isoformat()}|{last_task.id}") if last_task else None
    return Page[TaskPublic](items=items, next_cursor=next_cursor)


@router.get("/{task_id}", response_model=TaskPublic)
async def get_task(task_id: uuid.UUID, principal: PrincipalDep, session: MemberSessionDep) -> TaskPublic:
    """One task. The member who must call or visit sees the full phone number, and that read is access-logged."""
    task, case = await _visible(session, task_id)
    full = principal.is_admin or principal.role in ACTS_ON.get(task.tier, set())
    if full and case.subject.get("phone"):
        await access_log.record(
            session, ACCESS_LOG, principal, object_type="task", object_id=task.id, case_id=case.id,
            fields=["phone"], reason=f"{task.tier} task {task.id}",
        )  # fmt: skip
    warnings = await cases.warning_ids(session, [case.id])
    return task_public(task, case, warnings.get(case.id, []), full_phone=full)


async def _act(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    key: str | None,
    body: Any,
    action: Any,
) -> JSONResponse:
    """Run a member's action once per Idempotency-Key, answering a retry with the first answer."""
    print_ = idempotency.fingerprint(request.method, request.url.path, body)
    stored = await idempotency.replay(session, IDEMPOTENCY, principal.member_id, key, print_)
    if stored is not None:
        return JSONResponse(stored[1], stored[0])
    try:
        task, case = await action()
    except flow.FlowError as exc:
        raise Problem(409, "Conflict", str(exc), type="task-state") from None
    warnings = await cases.warning_ids(session, [case.id])
    answer = task_public(task, case, warnings.get(case.id, [])).model_dump(mode="json")
    await idempotency.remember(session, IDEMPOTENCY, principal.member_id, key, print_, 200, answer)
    return JSONResponse(answer, 200)


def _now() -> datetime:
    return datetime.now(UTC)


@router.post("/{task_id}/accept", response_model=TaskPublic)
async def accept(
    request: Request, task_id: uuid.UUID, principal: PrincipalDep, session: MemberSessionDep, key: IdempotencyKey = None
) -> JSONResponse:
    """签收: take the task."""

    async def action() -> tuple[Task, Case]:
        task, case = await _visible(session, task_id, lock=True)
        return await flow.accept(session, task, principal.username, _now()), case

    return await _act(request, principal, session, key, None, action)


@router.post("/{task_id}/arrive", response_model=TaskPublic)
async def arrive(
    request: Request,
    task_id: uuid.UUID,
    position: Arrival,
    principal: PrincipalDep,
    session: MemberSessionDep,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """The team is at the subject's door (见面), with its position."""

    async def action() -> tuple[Task, Case]:
        task, case = await _visible(session, task_id, lock=True)
        return await flow.arrive(session, task, principal.username, position.lat, position.lon, _now()), case

    return await _act(request, principal, session, key, position.model_dump(), action)


@router.post("/{task_id}/decline", response_model=TaskPublic)
async def decline(
    request: Request,
    state: StateDep,
    task_id: uuid.UUID,
    body: Decline,
    principal: PrincipalDep,
    session: MemberSessionDep,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """The team cannot go: a visit passes to the station's backup team, and the supervisor is told."""

    async def action() -> tuple[Task, Case]:
        task, case = await _visible(session, task_id, lock=True)
        return await flow.decline(session, task, principal.username, body.reason, state.notifier, _now()), case

    return await _act(request, principal, session, key, body.model_dump(), action)
