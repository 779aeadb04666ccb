"""Escalation decisions (contract §3): given what is known of a case and what just happened, what to do next.

Pure functions over plain values; the flow in `service.py` carries the decisions out. Escalation follows
whether the subject was actually reached and convinced, not only whether a responder acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from services.dispatch.policies.policy import PolicyValues

Tier = Literal["sms", "call", "visit", "follow_up"]
Closure = Literal["dissuaded", "not_dissuaded", "already_defrauded", "false_positive", "sms_only", "unreachable"]
CallResult = Literal["connected", "no_answer", "busy", "powered_off", "invalid_number", "rejected"]
DissuasionResult = Literal["dissuaded", "not_dissuaded", "already_defrauded", "not_met", "false_positive"]

NOT_MET_VISITS_BEFORE_SUPERVISOR = 2


@dataclass(frozen=True)
class NewTask:
    tier: Tier
    due_in_s: int
    ack_within_s: int | None
    reason: str
    attempt: int = 1


@dataclass(frozen=True)
class Decision:
    """What to do: tasks to create, whether to close (and how), whom to alert, and why."""

    tasks: tuple[NewTask, ...] = ()
    close: Closure | None = None
    alert_supervisor: str | None = None
    escalation: tuple[Tier, Tier, str] | None = None  # (from tier, to tier, reason), for metrics and events
    notes: tuple[str, ...] = field(default_factory=tuple)


def _call_deadline(risk: str, policy: PolicyValues) -> int:
    # low risk gets a call only when raised a tier; it is then as urgent as a medium one
    key = risk if risk in policy.call_first_within_s else "medium"
    return policy.call_first_within_s.get(key, 1800)  # type: ignore[call-overload,unused-ignore]


def opening(
    *,
    risk: str,
    in_progress: bool,
    residency: str,
    has_phone: bool,
    rewarned: bool,
    policy: PolicyValues,
) -> Decision:
    """The first actions of a new case."""
    tier: Tier = "sms" if risk in policy.sms_only_risk else "call"
    reasons: list[str] = []
    visit = False
    if risk == "critical":
        visit, reasons = True, [*reasons, "critical"]
    if in_progress:
        visit, reasons = True, [*reasons, "in_progress"]
    if residency in policy.visit_for_residency:
        visit, reasons = True, [*reasons, "residency_rule"]
    if rewarned:
        reasons.append("rewarned")
        if tier == "sms":
            tier = "call"
        else:
            visit = True
    if not has_phone:
        # no number to text or call: the only way to reach the person is at the door
        visit, reasons = True, [*reasons, "no_phone"]
    tasks = []
    if has_phone:
        tasks.append(NewTask("sms", policy.sms_within_s, None, "first contact"))
        if tier == "call":
            tasks.append(NewTask("call", _call_deadline(risk, policy), policy.ack_within_s, "risk " + risk))
    if visit:
        tasks.append(NewTask("visit", policy.visit_arrive_within_s, policy.ack_within_s, ",".join(reasons)))
    return Decision(tasks=tuple(tasks), notes=tuple(reasons))


def after_sms(*, delivered: bool, sms_only: bool, policy: PolicyValues) -> Decision:
    """A low-risk case whose SMS was delivered closes `sms_only`; an undeliverable one escalates to a call."""
    if not sms_only:
        return Decision()
    if delivered:
        return Decision(close="sms_only")
    call = NewTask("call", _call_deadline("medium", policy), policy.ack_within_s, "sms_undeliverable")
    return Decision(tasks=(call,), escalation=("sms", "call", "sms_undeliverable"))


def after_call(
    *,
    attempt: int,
    call_result: CallResult,
    dissuasion_result: DissuasionResult | None,
    policy: PolicyValues,
    visit_open: bool,
) -> Decision:
    """What a finished call attempt leads to."""
    visit = NewTask("visit", policy.visit_arrive_within_s, policy.ack_within_s, "")
    if call_result == "connected":
        if dissuasion_result in ("dissuaded", "already_defrauded", "false_positive"):
            if visit_open and dissuasion_result == "dissuaded":
                # a mandated visit (critical, in progress, the area's rule) still happens: 见面唤醒
                return Decision(notes=("dissuaded by phone; the mandated visit goes on",))
            return Decision(close=dissuasion_result)
        if visit_open:
            return Decision(notes=("not dissuaded by phone; the visit is already under way",))
        return _escalate(visit, "not_dissuaded")
    if call_result == "busy" and policy.escalate_on_busy:
        # the subject may be on the line with the fraudster right now
        return Decision() if visit_open else _escalate(visit, "busy")
    if call_result == "invalid_number":
        return Decision() if visit_open else _escalate(visit, "invalid_number")
    if attempt < policy.call_attempts:
        return Decision(
            tasks=(NewTask("call", policy.call_retry_interval_s, policy.ack_within_s, call_result, attempt + 1),)
        )
    return Decision() if visit_open else _escalate(visit, "not_connected")


def after_visit(*, dissuasion_result: DissuasionResult, not_met_so_far: int, policy: PolicyValues) -> Decision:
    """What a visit's outcome leads to. `not_met_so_far` counts earlier visits that did not find the person."""
    follow_up = NewTask("follow_up", policy.follow_up_within_s, policy.ack_within_s, "after the visit")
    match dissuasion_result:
        case "dissuaded":
            return Decision(tasks=(follow_up,))
        case "not_dissuaded":
            return Decision(tasks=(follow_up,), alert_supervisor="the subject was not dissuaded at the visit")
        case "not_met":
            if not_met_so_far + 1 < NOT_MET_VISITS_BEFORE_SUPERVISOR:
                again = NewTask("visit", policy.visit_arrive_within_s, policy.ack_within_s, "not_met")
                return Decision(tasks=(again,), notes=("one more visit",))
            return Decision(close="unreachable", alert_supervisor="the subject was not found at two visits")
        case "already_defrauded":
            return Decision(close="already_defrauded", alert_supervisor="already defrauded: for the investigation desk")
        case "false_positive":
            return Decision(close="false_positive")
    raise ValueError(dissuasion_result)


def after_follow_up(*, dissuaded_at_visit: bool) -> Decision:
    return Decision(close="dissuaded" if dissuaded_at_visit else "not_dissuaded")


AckAction = Literal["renotify", "reassign_backup", "alert_supervisor"]


def on_ack_missed(*, tier: Tier, misses: int) -> tuple[AckAction, ...]:
    """签收 not in time: re-notify once; after a second miss a visit goes to the station's backup team and a
    call task to the duty supervisor, who is alerted either way."""
    if misses <= 1:
        return ("renotify",)
    if tier == "visit":
        return ("reassign_backup", "alert_supervisor")
    return ("alert_supervisor",)


def on_due_missed(*, tier: Tier, visit_open: bool, policy: PolicyValues) -> Decision:
    """A missed deadline is a breach, and the case escalates: a missed deadline never silently drops a case."""
    visit = NewTask("visit", policy.visit_arrive_within_s, policy.ack_within_s, "")
    match tier:
        case "sms":
            return Decision(notes=("sms late",))
        case "call":
            return Decision() if visit_open else _escalate(visit, "call_deadline_missed")
        case "visit":
            return Decision(alert_supervisor="the team is not on site in time")
        case "follow_up":
            return Decision(alert_supervisor="the follow-up reminder is overdue")
    raise ValueError(tier)


def _escalate(visit: NewTask, reason: str) -> Decision:
    return Decision(
        tasks=(NewTask("visit", visit.due_in_s, visit.ack_within_s, reason),), escalation=("call", "visit", reason)
    )
