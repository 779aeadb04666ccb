"""The dissuasion flow, in one place: a warning opens (or joins) a case; the policy's decisions become tasks
and deadlines; deadlines, members' actions and outcomes lead to the next decisions, until the case closes.

Every function takes the transaction's session and only flushes: the consumer's or request's unit of work
commits the state, the deadlines, the notifications and the outbox events together, or none of them.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch import metrics
from services.dispatch.areas import repository as areas_repo
from services.dispatch.areas.models import Area
from services.dispatch.cases import policy as rules
from services.dispatch.cases import repository as cases
from services.dispatch.cases.models import STATE_RANK, TIER_STATE, Case, CaseWarning
from services.dispatch.db import DEADLINES, OUTBOX
from services.dispatch.notify.service import Notifier
from services.dispatch.policies import repository as policies
from services.dispatch.policies.policy import PolicyValues
from services.dispatch.policies.service import values_of
from services.dispatch.sms.provider import SmsMessage, SmsProvider, SmsResult, sms_text
from services.dispatch.tasks import repository as tasks
from services.dispatch.tasks.models import OPEN_STATUSES, Task
from shared import timers
from shared.db import remembered
from shared.events import (
    CaseClosedV1,
    CaseJoinedV1,
    CaseOpenedV1,
    DispatchEvent,
    Envelope,
    OutcomeRecordedV1,
    SlaBreachedV1,
    SmsSentV1,
    TaskAssignedV1,
    TaskCreatedV1,
    TaskEscalatedV1,
    Topic,
    WarningReceivedV1,
)
from shared.kafka import PoisonMessage
from shared.outbox import enqueue_many

log = logging.getLogger(__name__)
EVENT_SOURCE = "quanzu/dispatch"
RISK_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
# deadline kinds
ACK, DUE, UNASSIGNED, SMS_SEND = "task.ack", "task.due", "case.unassigned", "sms.send"
LOCK_BOTH = (Task, Case)  # the flow changes a task and its case together


class FlowError(Exception):
    """A member's action that the task's state does not allow (answered 409)."""


# --- policies -------------------------------------------------------------------------------------------------


async def policy_for(session: AsyncSession, area_code: str | None, risk: str) -> tuple[list[str], PolicyValues]:
    """The policy versions in force for an area, and the values they give at `risk`; worked out once per area, risk
    and transaction (a batch of warnings opens cases in a few areas)."""

    async def read() -> tuple[list[str], PolicyValues]:
        default, area = await policies.in_force(session, area_code)
        return [str(v.id) for v in (default, area) if v is not None], values_of(default, area, risk)

    return await remembered(session, policies.VALUES_MEMO, (area_code, risk), read)


async def _values_at(session: AsyncSession, case: Case, risk: str) -> PolicyValues:
    """The case's own policy versions (not today's), at a possibly raised risk level."""
    versions = {str(v) for v in case.policy_version_ids}
    return values_of(*await policies.of_versions(session, versions, case.area_code), risk)


# --- a warning arrives --------------------------------------------------------------------------------------


async def on_warning(session: AsyncSession, warning: WarningReceivedV1, notifier: Notifier, now: datetime) -> None:
    await on_warnings(session, [warning], notifier, now)


async def on_warnings(
    session: AsyncSession, warnings: Sequence[WarningReceivedV1], notifier: Notifier, now: datetime
) -> None:
    """Warnings in turn, each opening a case or joining its subject's open one, with the effect of handling each
    alone, in far fewer statements: what they read first is read for all of them at once (the warnings already
    part of a case, their areas, their subjects' cases), so that nothing is flushed between them and a batch's new
    cases, tasks and rows are written together at the end. A subject's later warning in the batch joins the case its
    earlier one opened, as it would have found it in the database."""
    known = await cases.known_warnings(session, [w.warning_id for w in warnings])
    fresh: list[WarningReceivedV1] = []
    for warning in warnings:
        if warning.warning_id not in known:
            known.add(warning.warning_id)  # the same warning twice in a batch is one warning
            fresh.append(warning)
    if not fresh:
        return  # replays of warnings already part of a case
    known_areas = await areas_repo.get_many(session, {w.area_code for w in fresh if w.area_code})
    areas = {code: area for code, area in known_areas.items() if area.active}
    plans = []
    for warning in fresh:
        area = areas.get(warning.area_code) if warning.area_code else None
        plans.append((warning, area, *await policy_for(session, area.area_code if area else None, warning.risk_level)))
    subjects = await cases.subjects_cases(
        session,
        {w.subject_key for w in fresh},
        open_since=min(now - timedelta(seconds=values.join_window_s) for *_, values in plans),
        closed_since=min(now - timedelta(seconds=values.rewarn_window_s) for *_, values in plans),
    )
    for warning, area, versions, values in plans:
        theirs = subjects.setdefault(warning.subject_key, [])
        existing = cases.joinable(theirs, now - timedelta(seconds=values.join_window_s))
        if existing is not None:
            await _join(session, existing, warning, notifier, now)
            continue
        rewarned = cases.rewarned(theirs, now - timedelta(seconds=values.rewarn_window_s))
        theirs.insert(0, await _open(session, warning, area, versions, values, rewarned, notifier, now))


async def _open(
    session: AsyncSession,
    warning: WarningReceivedV1,
    area: Area | None,
    versions: list[str],
    values: PolicyValues,
    rewarned: bool,
    notifier: Notifier,
    now: datetime,
) -> Case:
    """A new case for the warning's subject, under the policy in force, and the tasks its opening calls for."""
    subject = warning.subject.model_dump()
    case = Case(
        subject_key=warning.subject_key,
        subject=subject,
        area_code=area.area_code if area else None,
        station=area.station if area else None,
        street=area.street if area else None,
        risk_level=warning.risk_level,
        fraud_type=warning.fraud_type,
        in_progress=warning.in_progress,
        residency=warning.subject.residency,
        rewarned=rewarned,
        source=warning.source,
        policy_version_ids=list(versions),
        policy=values.model_dump(),
        opened_at=now,
        assigned_at=now if area else None,
        last_warning_at=now,
    )
    cases.add(session, case)
    cases.add(session, _case_warning(case, warning))
    await _transition(session, case, "opened", f"warning:{warning.source}", "warning received", now, force=True)
    await _publish(
        session,
        case,
        CaseOpenedV1(
            case_id=case.id, warning_id=warning.warning_id, subject_key=case.subject_key, source=case.source,
            area_code=case.area_code, station=case.station, street=case.street, risk_level=warning.risk_level,
            fraud_type=warning.fraud_type, in_progress=case.in_progress, residency=warning.subject.residency,
            rewarned=rewarned, opened_at=now, warning_received_at=warning.received_at,
        ),
    )  # fmt: skip
    decision = _opening(case, values)
    if area is None:
        # The district's unassigned queue: the SMS goes out now; calls and visits once a supervisor assigns.
        decision = rules.Decision(tasks=tuple(t for t in decision.tasks if t.tier == "sms"))
        await timers.schedule(
            session, DEADLINES, UNASSIGNED, case.id, now + timedelta(seconds=values.unassigned_within_s)
        )
        await notifier.notify(
            session, recipient_kind="district", recipient="district", kind="case.unassigned", case_id=case.id,
            message=f"a {case.risk_level}-risk case has no known police area: assign it",
        )  # fmt: skip
    await apply(session, case, decision, notifier, now, actor="policy", open_before=())
    return case


def _case_warning(case: Case, warning: WarningReceivedV1) -> CaseWarning:
    return CaseWarning(
        warning_id=warning.warning_id,
        case_id=case.id,
        source=warning.source,
        risk_level=warning.risk_level,
        received_at=warning.received_at,
    )


def _opening(case: Case, values: PolicyValues) -> rules.Decision:
    return rules.opening(
        risk=case.risk_level,
        in_progress=case.in_progress,
        residency=case.residency,
        has_phone=bool(case.subject.get("phone")),
        rewarned=case.rewarned,
        policy=values,
    )


async def _join(
    session: AsyncSession, case: Case, warning: WarningReceivedV1, notifier: Notifier, now: datetime
) -> None:
    """A further warning joins the open case: the risk rises to the highest seen; nothing under way is repeated,
    but a risk or an in-progress flag that now calls for a visit gets one at once."""
    cases.add(session, _case_warning(case, warning))
    case.last_warning_at = now
    raised = RISK_RANK[warning.risk_level] > RISK_RANK[case.risk_level]
    newly_in_progress = warning.in_progress and not case.in_progress
    if raised:
        case.risk_level = warning.risk_level
        case.policy = (await _values_at(session, case, warning.risk_level)).model_dump()
    case.in_progress = case.in_progress or warning.in_progress
    session.add(case)
    await _publish(
        session, case,
        CaseJoinedV1(case_id=case.id, warning_id=warning.warning_id, source=warning.source,
                     risk_level=warning.risk_level, at=now),
    )  # fmt: skip
    if (raised or newly_in_progress) and case.area_code is not None:
        open_tiers = {t.tier for t in await tasks.open_tasks(session, case.id)}
        wanted = _opening(case, PolicyValues.model_validate(case.policy)).tasks
        missing = [t for t in wanted if t.tier in ("call", "visit") and t.tier not in open_tiers]
        if missing:
            reason = "risk raised" if raised else "in progress"
            visit_added = any(t.tier == "visit" for t in missing)
            escalation: tuple[rules.Tier, rules.Tier, str] | None = (
                ("call", "visit", reason.replace(" ", "_")) if visit_added else None
            )
            await apply(session, case, rules.Decision(tasks=tuple(missing), escalation=escalation), notifier, now,
                        actor=f"warning:{warning.source}")  # fmt: skip


# --- carrying out a decision ------------------------------------------------------------------------------------


async def apply(
    session: AsyncSession,
    case: Case,
    decision: rules.Decision,
    notifier: Notifier,
    now: datetime,
    *,
    actor: str,
    open_before: Sequence[Task] | None = None,
) -> None:
    """Carry out `decision`. `open_before`, when the caller has them at hand: the case's open tasks as the
    transaction has them, so that they need not be read again for the case's new state."""
    created = [await _create_task(session, case, new, notifier, now) for new in decision.tasks]
    # The new tasks' deadlines and events in one statement each, not one per task.
    await timers.schedule_many(session, DEADLINES, [d for task in created for d in _deadlines_of(task)])
    events: list[DispatchEvent] = [_task_created(task) for task in created]
    if decision.escalation is not None:
        from_tier, to_tier, reason = decision.escalation
        metrics.ESCALATIONS.labels(case.area_code or "unassigned", from_tier, to_tier, reason).inc()
        events.append(TaskEscalatedV1(case_id=case.id, from_tier=from_tier, to_tier=to_tier, reason=reason, at=now))
    await _publish(session, case, *events)
    if decision.alert_supervisor:
        await _alert_supervisors(session, case, decision.alert_supervisor, notifier)
    open_now = None if open_before is None else [t for t in (*open_before, *created) if t.status in OPEN_STATUSES]
    if decision.close is not None:
        reason = ", ".join(decision.notes) or decision.close
        await close(session, case, decision.close, now, actor=actor, reason=reason, open_now=open_now)
        return
    if open_now is None:
        open_now = await tasks.open_tasks(session, case.id)
    open_tiers = [t.tier for t in open_now]
    if open_tiers:
        state = max((TIER_STATE[t] for t in open_tiers), key=STATE_RANK.__getitem__)
        reason = decision.escalation[2] if decision.escalation else ", ".join(t.reason for t in decision.tasks)
        await _transition(session, case, state, actor, reason or "tasks created", now)


async def _create_task(
    session: AsyncSession, case: Case, new: rules.NewTask, notifier: Notifier, now: datetime
) -> Task:
    team_id = None
    if new.tier in ("visit", "follow_up") and case.area_code is not None:
        team_id = await tasks.team_id_for(session, case.area_code, backup=False)
        team_id = team_id or await tasks.team_id_for(session, case.area_code, backup=True)
    task = Task(
        case_id=case.id,
        tier=new.tier,
        attempt=new.attempt,
        area_code=case.area_code,
        station=case.station,
        team_id=team_id,
        reason=new.reason[:200],
        created_at=now,
        due_at=now + timedelta(seconds=new.due_in_s),
        ack_due_at=now + timedelta(seconds=new.ack_within_s) if new.ack_within_s is not None else None,
    )
    tasks.add(session, task)
    metrics.TASKS_CREATED.labels(case.area_code or "unassigned", new.tier).inc()
    if new.tier != "sms":
        await _notify_assignees(session, case, task, notifier, "task.new")
    if new.tier in ("visit", "follow_up") and team_id is None:
        await _alert_supervisors(session, case, f"no team to take a {new.tier} task in {case.area_code}", notifier)
    return task


def _deadlines_of(task: Task) -> list[tuple[str, uuid.UUID, datetime]]:
    deadlines = [(SMS_SEND, task.id, task.created_at)] if task.tier == "sms" else []
    deadlines.append((DUE, task.id, task.due_at))
    if task.ack_due_at is not None:
        deadlines.append((ACK, task.id, task.ack_due_at))
    return deadlines


def _task_created(task: Task) -> TaskCreatedV1:
    return TaskCreatedV1(
        task_id=task.id, case_id=task.case_id, tier=task.tier, attempt=task.attempt, area_code=task.area_code,
        station=task.station, team_id=task.team_id, created_at=task.created_at, due_at=task.due_at,
        ack_due_at=task.ack_due_at, reason=task.reason,
    )  # fmt: skip


async def close(
    session: AsyncSession,
    case: Case,
    closure: str,
    now: datetime,
    *,
    actor: str,
    reason: str,
    open_now: Sequence[Task] | None = None,
) -> None:
    """Close the case, cancelling its open tasks (`open_now`, when the caller has them at hand) and deadlines."""
    for task in await tasks.open_tasks(session, case.id) if open_now is None else open_now:
        task.status = "cancelled"
        session.add(task)
        await timers.cancel(session, DEADLINES, task.id)
    await timers.cancel(session, DEADLINES, case.id)
    case.closure = closure
    case.closed_at = now
    await _transition(session, case, "closed", actor, f"{closure}: {reason}", now)
    await _publish(session, case, CaseClosedV1(case_id=case.id, closure=closure, area_code=case.area_code, at=now))


# --- deadlines ------------------------------------------------------------------------------------------------


async def on_deadlines(session: AsyncSession, dues: Sequence[timers.Due], notifier: Notifier, now: datetime) -> None:
    """Deadlines fired together, with the effect of firing each in turn alone, in far fewer statements: their
    tasks and cases are locked in one query, and the cases' open tasks read in one query per turn. (The timer
    engine holds what they insert, events, deadlines, notifications and transitions, to write it in one statement
    per table at the end.)

    A case's deadlines are fired in turns: each case's first deadline in the first turn, its second in the next,
    and so on, so that a case's second deadline sees the tasks its first one left. The cases are independent of
    each other, so that only the order within a case matters."""
    found = await tasks.with_cases(session, [d.ref for d in dues if d.kind != UNASSIGNED], lock=LOCK_BOTH)
    async for due, read in _in_turns(session, dues, found):
        await _on_deadline(session, due, read, notifier, now)


async def _in_turns(
    session: AsyncSession, dues: Sequence[timers.Due], found: dict[uuid.UUID, tuple[Task, Case]]
) -> AsyncIterator[tuple[timers.Due, tuple[Task, Case, list[Task]] | None]]:
    """The deadlines in turns, each with its task and case (`found`, by the deadline's ref) and the case's open tasks
    as the earlier turns left them: each case's first deadline in the first turn, its second in the next, and so on.
    The open tasks are read afresh each turn (the session writes the earlier turns' changes first), in one query."""
    turns: list[list[timers.Due]] = []
    met: Counter[uuid.UUID] = Counter()
    for due in dues:
        case_id = found[due.ref][1].id if due.ref in found else due.ref  # an unassigned case's deadline is its own
        if met[case_id] == len(turns):
            turns.append([])
        turns[met[case_id]].append(due)
        met[case_id] += 1
    for turn in turns:
        open_now = await tasks.open_tasks_of(session, list({found[d.ref][1].id for d in turn if d.ref in found}))
        for due in turn:
            pair = found.get(due.ref)
            yield due, (*pair, open_now[pair[1].id]) if pair is not None else None


async def _on_deadline(
    session: AsyncSession,
    due: timers.Due,
    read: tuple[Task, Case, list[Task]] | None,
    notifier: Notifier,
    now: datetime,
) -> None:
    """One deadline. `read`: its task and case, locked, and the case's open tasks (None: the task is gone)."""
    if due.kind == UNASSIGNED:
        case = await cases.get(session, due.ref, lock=True)
        if case is not None and case.area_code is None and case.state != "closed":
            await _breach(session, case, None, "opened", "unassigned", due.due_at, now)
            await notifier.notify(
                session, recipient_kind="district", recipient="district", kind="supervisor.alert", case_id=case.id,
                message="a case has waited in the unassigned queue past its deadline",
            )  # fmt: skip
        return
    if read is None:
        return
    task, case, open_now = read
    if case.state == "closed":
        return
    values = PolicyValues.model_validate(case.policy)
    if due.kind == ACK and task.status == "open":
        task.ack_misses += 1
        session.add(task)
        await _breach(session, case, task, task.tier, "ack", due.due_at, now)
        for action in rules.on_ack_missed(tier=task.tier, misses=task.ack_misses):  # type: ignore[arg-type]
            if action == "renotify":
                task.ack_due_at = now + timedelta(seconds=values.ack_within_s)
                await timers.schedule(session, DEADLINES, ACK, task.id, task.ack_due_at)
                await _notify_assignees(session, case, task, notifier, "task.renotify")
            elif action == "reassign_backup":
                await _reassign_to_backup(session, case, task, notifier, now, values)
            else:
                await _alert_supervisors(session, case, f"a {task.tier} task was not acknowledged in time", notifier)
    elif due.kind == DUE and task.status in OPEN_STATUSES:
        await _breach(session, case, task, task.tier, "due", due.due_at, now)
        visit_open = any(t.tier == "visit" for t in open_now if t.id != task.id)
        decision = rules.on_due_missed(tier=task.tier, visit_open=visit_open, policy=values)  # type: ignore[arg-type]
        await apply(session, case, decision, notifier, now, actor="deadline", open_before=open_now)


async def _reassign_to_backup(
    session: AsyncSession, case: Case, task: Task, notifier: Notifier, now: datetime, values: PolicyValues
) -> None:
    backup = await tasks.team_id_for(session, task.area_code, backup=True) if task.area_code else None
    if backup is None or backup == task.team_id:
        return
    task.team_id = backup
    task.ack_due_at = now + timedelta(seconds=values.ack_within_s)
    session.add(task)
    await timers.schedule(session, DEADLINES, ACK, task.id, task.ack_due_at)
    await _publish(
        session, case,
        TaskAssignedV1(task_id=task.id, case_id=case.id, team_id=backup, station=task.station,
                       by="reassigned:backup", at=now),
    )  # fmt: skip
    await _notify_assignees(session, case, task, notifier, "task.new")


async def _breach(
    session: AsyncSession, case: Case, task: Task | None, tier: str, kind: str, due_at: datetime, now: datetime
) -> None:
    metrics.SLA_BREACHES.labels(case.area_code or "unassigned", tier).inc()
    await _publish(
        session, case,
        SlaBreachedV1(task_id=task.id if task else None, case_id=case.id, tier=tier, kind=kind,
                      area_code=case.area_code, due_at=due_at, at=now),
    )  # fmt: skip


# --- outcomes -------------------------------------------------------------------------------------------------


async def on_outcome(session: AsyncSession, outcome: OutcomeRecordedV1, notifier: Notifier, now: datetime) -> None:
    found = await tasks.with_case(session, outcome.task_id, lock=LOCK_BOTH)
    if found is None:
        raise PoisonMessage(f"outcome {outcome.outcome_id} names an unknown task")
    task, case = found
    if task.tier != outcome.kind:
        raise PoisonMessage(f"outcome {outcome.outcome_id} is a {outcome.kind} outcome for a {task.tier} task")
    result = outcome.model_dump(mode="json", include={"call_result", "dissuasion_result", "outcome_id"})
    if outcome.corrects is not None:
        await _correct(session, case, task, outcome, result, now)
        return
    if task.status not in OPEN_STATUSES:
        return  # already decided (a redelivered or late outcome): the flow has moved on
    task.status, task.done_at, task.result = "done", now, result
    session.add(task)
    await timers.cancel(session, DEADLINES, task.id)
    area = case.area_code or "unassigned"
    reached = (task.tier == "call" and outcome.call_result == "connected") or (
        task.tier == "visit" and outcome.dissuasion_result not in (None, "not_met")
    )
    if reached and case.first_contact_at is None:
        case.first_contact_at = now
        metrics.TIME_TO_FIRST_CONTACT.labels(task.tier).observe((now - case.opened_at).total_seconds())
    if case.state == "closed":
        session.add(case)
        return
    values = PolicyValues.model_validate(case.policy)
    others = [t for t in await tasks.open_tasks(session, case.id) if t.id != task.id]
    if task.tier == "call":
        if outcome.call_result is None:
            raise PoisonMessage("a call outcome needs a call_result")
        metrics.CALLS.labels(area, outcome.call_result).inc()
        decision = rules.after_call(
            attempt=task.attempt, call_result=outcome.call_result, dissuasion_result=outcome.dissuasion_result,
            policy=values, visit_open=any(t.tier == "visit" for t in others),
        )  # fmt: skip
    elif task.tier == "visit":
        if outcome.dissuasion_result is None:
            raise PoisonMessage("a visit outcome needs a dissuasion_result")
        metrics.VISITS.labels(area, outcome.dissuasion_result).inc()
        earlier = [t for t in await tasks.of_case(session, case.id) if t.tier == "visit" and t.id != task.id]
        not_met = sum(1 for t in earlier if (t.result or {}).get("dissuasion_result") == "not_met")
        decision = rules.after_visit(dissuasion_result=outcome.dissuasion_result, not_met_so_far=not_met, policy=values)
        if outcome.dissuasion_result != "not_met":
            for call in (t for t in others if t.tier == "call"):
                call.status = "cancelled"  # the person was met: no more calls
                session.add(call)
                await timers.cancel(session, DEADLINES, call.id)
    elif task.tier == "follow_up":
        visits = [t for t in await tasks.of_case(session, case.id) if t.tier == "visit" and t.result]
        last = (visits[-1].result or {}).get("dissuasion_result") if visits else None
        decision = rules.after_follow_up(dissuaded_at_visit=last == "dissuaded")
    else:
        decision = rules.Decision()  # SMS outcomes come from the provider, not from members
    session.add(case)
    await apply(
        session, case, decision, notifier, now, actor=f"outcome:{outcome.recorded_by or 'member'}", open_before=others
    )


async def _correct(
    session: AsyncSession, case: Case, task: Task, outcome: OutcomeRecordedV1, result: dict[str, Any], now: datetime
) -> None:
    """A member corrected an outcome. The flow is not re-run (visits made stay made), but the record is fixed and
    a closed case whose closure was this task's dissuasion result is re-closed with the corrected one."""
    if (task.result or {}).get("outcome_id") == result["outcome_id"]:
        return  # redelivered
    task.result = result
    session.add(task)
    note = f"{task.tier} outcome corrected: {outcome.correction_reason or 'no reason given'}"
    await _transition(session, case, case.state, f"outcome:{outcome.recorded_by or 'member'}", note, now, force=True)
    decided = [t for t in await tasks.of_case(session, case.id) if (t.result or {}).get("dissuasion_result")]
    corrected = outcome.dissuasion_result
    if (
        case.state == "closed"
        and case.closure in RESULT_CLOSURES
        and corrected in RESULT_CLOSURES
        and corrected != case.closure
        and decided
        and decided[-1].id == task.id
    ):
        case.closure = corrected
        session.add(case)
        await _transition(session, case, "closed", "correction", f"{corrected}: closure corrected", now, force=True)
        await _publish(
            session, case, CaseClosedV1(case_id=case.id, closure=corrected, area_code=case.area_code, at=now)
        )


#: Closures that are a member's dissuasion result as it stands (the others are decided by the flow itself).
RESULT_CLOSURES = ("dissuaded", "not_dissuaded", "already_defrauded", "false_positive")


# --- members acting on tasks ----------------------------------------------------------------------------------


async def accept(session: AsyncSession, task: Task, username: str, now: datetime) -> Task:
    """签收: the member takes the task; the acknowledgement deadline is retired."""
    if task.status == "acked":
        return task
    if task.status != "open":
        raise FlowError(f"the task is {task.status}")
    task.status, task.acked_at, task.acked_by = "acked", now, username
    session.add(task)
    await timers.cancel(session, DEADLINES, task.id, (ACK,))
    case = await cases.get(session, task.case_id)
    assert case is not None
    await _publish(
        session, case,
        TaskAssignedV1(task_id=task.id, case_id=task.case_id, team_id=task.team_id, station=task.station,
                       by=f"accepted:{username}", at=now),
    )  # fmt: skip
    return task


async def arrive(session: AsyncSession, task: Task, username: str, lat: float, lon: float, now: datetime) -> Task:
    """The team is on site (见面): the visit's arrival deadline is met."""
    if task.tier != "visit":
        raise FlowError("only a visit has an arrival")
    if task.status == "open":
        await accept(session, task, username, now)
    if task.status != "acked":
        raise FlowError(f"the task is {task.status}")
    if task.arrived_at is None:
        task.arrived_at, task.position = now, {"lat": lat, "lon": lon}
        session.add(task)
        await timers.cancel(session, DEADLINES, task.id, (DUE,))
    return task


async def decline(
    session: AsyncSession, task: Task, username: str, reason: str, notifier: Notifier, now: datetime
) -> Task:
    """A team that cannot go hands the visit to the station's backup team; the supervisor is told either way."""
    if task.status not in OPEN_STATUSES:
        raise FlowError(f"the task is {task.status}")
    case = await cases.get(session, task.case_id, lock=True)
    assert case is not None
    values = PolicyValues.model_validate(case.policy)
    await timers.cancel(session, DEADLINES, task.id, (ACK,))
    task.status, task.acked_at, task.acked_by = "open", None, None
    if task.tier == "visit":
        await _reassign_to_backup(session, case, task, notifier, now, values)
    await _alert_supervisors(session, case, f"{username} declined a {task.tier} task: {reason}", notifier)
    return task


# --- helpers ---------------------------------------------------------------------------------------------------


async def _transition(
    session: AsyncSession, case: Case, to_state: str, actor: str, reason: str, now: datetime, *, force: bool = False
) -> None:
    if case.state == to_state and not force:
        return
    from_state = case.state if not force else "-"
    await cases.add_transition(session, case.id, now, from_state, to_state, actor[:100], reason[:500])
    case.state = to_state
    session.add(case)


async def _notify_assignees(session: AsyncSession, case: Case, task: Task, notifier: Notifier, kind: str) -> None:
    if task.team_id is not None:
        recipient_kind, recipient = "team", str(task.team_id)
    else:
        recipient_kind, recipient = "station", task.station or "district"
    await notifier.notify(
        session, recipient_kind=recipient_kind, recipient=recipient, kind=kind, case_id=case.id, task_id=task.id,
        message=f"{task.tier} task ({case.risk_level} risk, {case.fraud_type}) in {case.area_code}, "
        f"due {task.due_at:%H:%M}",
    )  # fmt: skip


async def _alert_supervisors(session: AsyncSession, case: Case, message: str, notifier: Notifier) -> None:
    await notifier.notify(
        session, recipient_kind="supervisors", recipient=case.station or "district", kind="supervisor.alert",
        case_id=case.id, message=message[:500],
    )  # fmt: skip


async def _publish(session: AsyncSession, case: Case, *events: DispatchEvent) -> None:
    """The case's events, in order, keyed by the case (so its events stay in order on the topic)."""
    key = str(case.id)
    envelopes = [Envelope.new(e.TYPE, EVENT_SOURCE, e, subject=key) for e in events]
    await enqueue_many(session, OUTBOX, [(Topic.DISPATCH_EVENTS, key, envelope) for envelope in envelopes])


async def assign(
    session: AsyncSession, case: Case, area: Area, notifier: Notifier, now: datetime, *, actor: str
) -> None:
    """A supervisor gives an unassigned case its police area: the calls and visits its policy calls for begin."""
    if case.area_code is not None:
        raise FlowError(f"the case is already assigned to {case.area_code}")
    if case.state == "closed":
        raise FlowError("the case is closed")
    versions, values = await policy_for(session, area.area_code, case.risk_level)
    case.area_code, case.station, case.street = area.area_code, area.station, area.street
    case.assigned_at, case.policy_version_ids, case.policy = now, versions, values.model_dump()
    session.add(case)
    await timers.cancel(session, DEADLINES, case.id, (UNASSIGNED,))
    for task in await tasks.open_tasks(session, case.id):
        task.area_code, task.station = area.area_code, area.station
        session.add(task)
    opening = _opening(case, values)
    decision = rules.Decision(tasks=tuple(t for t in opening.tasks if t.tier != "sms"))
    await _transition(session, case, case.state, actor, f"assigned to {area.area_code}", now, force=True)
    await apply(session, case, decision, notifier, now, actor=actor)


# --- the SMS tier -----------------------------------------------------------------------------------------------

SMS_ATTEMPTS = 4  # the provider retries within each attempt; the timer engine spaces the attempts out


async def send_sms(
    session: AsyncSession, due: timers.Due, provider: SmsProvider, notifier: Notifier, now: datetime
) -> None:
    """One SMS (`send_sms_together`, for one): raises `SmsNotYet` if the provider could not take it this time."""
    not_yet = await send_sms_together(session, [due], provider, notifier, now)
    if not_yet:
        raise not_yet[due.id]


async def send_sms_together(
    session: AsyncSession, dues: Sequence[timers.Due], provider: SmsProvider, notifier: Notifier, now: datetime
) -> dict[int, Exception]:
    """Hand the tasks' SMS to the provider, each keyed by its task id: whatever crashes, the subject gets it once.

    Read in one query, handed to the provider in one request, then locked in one query and recorded in turns
    (`_in_turns`). The provider is called before the tasks and cases are locked: a slow provider (its retries take up
    to `sms_deadline_s`) must not hold up a case's other work, a joining warning, an outcome or a deadline, for that
    long. The idempotency key makes a send repeated after a crash, or raced by the case closing, harmless. Those the
    provider could not take this time are returned, unchanged, for the timer engine to try again later."""
    found = await tasks.with_cases(session, [d.ref for d in dues])
    to_send = [(d, found[d.ref], phone) for d in dues if d.ref in found and (phone := _sms_to(*found[d.ref]))]
    results = await provider.send_many([_message(*pair, phone) for _, pair, phone in to_send])
    sent = {due.id: result for (due, _, _), result in zip(to_send, results, strict=True)}
    locked = await tasks.with_cases(session, [d.ref for d in dues if d.id in sent], lock=LOCK_BOTH)
    not_yet: dict[int, Exception] = {}
    async for due, read in _in_turns(session, [d for d in dues if d.id in sent], locked):
        try:
            await _sms_sent(session, due, read, sent[due.id], notifier, now)
        except SmsNotYet as exc:  # raised before anything changed
            not_yet[due.id] = exc
    return not_yet


def _sms_to(task: Task, case: Case) -> str | None:
    """The phone the task's SMS goes to, if it is still to be sent."""
    if task.status not in OPEN_STATUSES or case.state == "closed":
        return None
    phone = case.subject.get("phone")
    return str(phone) if phone else None


def _message(task: Task, case: Case, phone: str) -> SmsMessage:
    return SmsMessage(idempotency_key=str(task.id), phone=phone, text=sms_text(case.fraud_type))


async def _sms_sent(
    session: AsyncSession,
    due: timers.Due,
    read: tuple[Task, Case, list[Task]] | None,
    result: SmsResult,
    notifier: Notifier,
    now: datetime,
) -> None:
    """Record what the provider said of the task's SMS, and decide what follows. `read`: the task and its case, locked
    since the send, and the case's open tasks (None: the task is gone)."""
    if read is None or read[0].status not in OPEN_STATUSES or read[1].state == "closed":
        log.info("SMS for task %s went out while its case moved on (%s)", due.ref, read[1].state if read else "gone")
        return
    task, case, open_now = read
    if not result.accepted and result.retryable and due.attempts + 1 < SMS_ATTEMPTS:
        metrics.SMS_SENT.labels("retrying").inc()
        raise SmsNotYet(result.error or "the provider did not take the message")
    metrics.SMS_SENT.labels("accepted" if result.accepted else "failed").inc()
    task.status, task.done_at = "done", now
    task.result = {"accepted": result.accepted, "provider_id": result.provider_id, "error": result.error}
    session.add(task)
    await timers.cancel(session, DEADLINES, task.id, (DUE,))  # not the sms.send deadline being fired
    await _publish(session, case, SmsSentV1(task_id=task.id, case_id=case.id, accepted=result.accepted, at=now))
    values = PolicyValues.model_validate(case.policy)
    others = [t for t in open_now if t.id != task.id]
    sms_only = case.risk_level in values.sms_only_risk and not others
    decision = rules.after_sms(delivered=result.accepted, sms_only=sms_only, policy=values)
    await apply(session, case, decision, notifier, now, actor="sms", open_before=others)


class SmsNotYet(Exception):
    """The provider could not take the message this time; the timer engine tries again later."""
