"""What must hold after a fault run, as pure functions of what the databases and the SMS gateway recorded.

`Snapshot` holds plain values read from the system (see `snapshot.py`); each check returns the problems it
found, as sentences that name warnings by their number in the run and cases and tasks by id, never a subject's
phone or name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: Outcome-based rates (contract §5): what was answered, not when; equal with and without faults.
OUTCOME_RATES = (
    "call_connected_rate",
    "call_attempt_connected_rate",
    "visit_met_rate",
    "dissuasion_rate",
    "overall_dissuasion_rate",
    "post_warning_rate",
    "antifraud_app_install_rate",
)
#: What each event may be committed once per: a deadline's breach is one per (task or case, kind, due time).
ONCE_PER: dict[str, tuple[str, ...]] = {
    "task.created": ("task_id",),
    "case.closed": ("case_id",),
    "sms.sent": ("task_id",),
    "sla.breached": ("task_id", "case_id", "kind", "due_at"),
}
#: How long after its due time a deadline may still be waiting for the engine when the snapshot is taken.
DEADLINE_GRACE = timedelta(seconds=10)


@dataclass(frozen=True)
class Phase:
    name: str
    source: str
    acked: dict[int, str]  # the n-th record -> the warning id intake acknowledged


@dataclass(frozen=True)
class Task:
    id: str
    case_id: str
    tier: str
    attempt: int
    status: str
    sms_accepted: bool  # an SMS task whose provider took the message


@dataclass(frozen=True)
class Deadline:
    id: int
    kind: str
    ref: str
    due_at: datetime
    fired_at: datetime | None


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Message:
    id: str
    to: str
    idempotency_key: str


@dataclass
class Snapshot:
    stored: dict[str, tuple[str, str]] = field(default_factory=dict)  # intake: warning id -> (source, external_id)
    case_of: dict[str, list[str]] = field(default_factory=dict)  # dispatch: warning id -> its cases
    cases: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # case id -> (state, closure)
    case_phone: dict[str, str] = field(default_factory=dict)  # case id -> the subject's phone (compared, never shown)
    tasks: list[Task] = field(default_factory=list)
    deadlines: list[Deadline] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # dispatch's outbox
    outcomes: Counter[str] = field(default_factory=Counter)  # feedback: task id -> outcome rows
    messages: list[Message] = field(default_factory=list)  # the SMS gateway's record
    now: datetime | None = None


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [*self.lost, *self.duplicated, *self.other]


def warnings_reached_dispatch(phase: Phase, snap: Snapshot, findings: Findings) -> None:
    """Every acknowledged warning is stored by intake and is part of exactly one case."""
    for n, warning_id in sorted(phase.acked.items()):
        stored = snap.stored.get(warning_id)
        if stored is None or stored[0] != phase.source:
            findings.lost.append(f"{phase.name} warning {n} ({warning_id}) was acknowledged but is not stored")
        cases = snap.case_of.get(warning_id, [])
        if not cases:
            findings.lost.append(f"{phase.name} warning {n} ({warning_id}) was acknowledged but has no case")
        elif len(cases) > 1:
            findings.duplicated.append(f"{phase.name} warning {n} ({warning_id}) is in {len(cases)} cases")


def phantom_cases(phases: Iterable[Phase], snap: Snapshot, findings: Findings) -> None:
    """No case comes from anything but an acknowledged warning (poison, for one, must not open cases)."""
    ours = {c for p in phases for w in p.acked.values() for c in snap.case_of.get(w, [])}
    for case_id in sorted(set(snap.cases) - ours):
        findings.other.append(f"case {case_id} belongs to no acknowledged warning")


def tasks_by_case(snap: Snapshot) -> dict[str, list[Task]]:
    found: dict[str, list[Task]] = {}
    for task in snap.tasks:
        found.setdefault(task.case_id, []).append(task)
    return found


def flows_match(faulty: Phase, baseline: Phase, snap: Snapshot, findings: Findings) -> None:
    """The n-th warning's case got the same tasks and the same closure with faults as without: nothing more
    (work done twice) and nothing less (work lost)."""
    by_case = tasks_by_case(snap)
    for n in sorted(set(faulty.acked) | set(baseline.acked)):
        shapes = []
        for phase in (faulty, baseline):
            cases = snap.case_of.get(phase.acked.get(n, ""), [])
            tasks = [t for c in cases for t in by_case.get(c, [])]
            closures = sorted(str(snap.cases[c][1]) for c in cases if c in snap.cases)
            shapes.append((Counter((t.tier, t.attempt) for t in tasks), closures))
        (got, got_closure), (want, want_closure) = shapes
        if got != want:
            extra, missing = got - want, want - got
            if extra:
                findings.duplicated.append(f"warning {n}: tasks {dict(extra)} beyond the fault-free run's")
            if missing:
                findings.lost.append(f"warning {n}: tasks {dict(missing)} of the fault-free run never created")
        if got_closure != want_closure:
            findings.other.append(f"warning {n}: closed {got_closure}, without faults {want_closure}")


def sms_once(snap: Snapshot, findings: Findings) -> None:
    """No subject got the same SMS twice; every SMS recorded as sent is at the gateway, under its task's id."""
    per_key = Counter(m.idempotency_key for m in snap.messages)
    per_phone = Counter(m.to for m in snap.messages)
    for key, count in sorted(per_key.items()):
        if count > 1:
            findings.duplicated.append(f"SMS task {key}: {count} messages at the gateway")
    phones = {p: c for c, p in snap.case_phone.items()}
    for phone, count in per_phone.items():
        if count > 1:
            findings.duplicated.append(f"case {phones.get(phone, '(unknown)')}: {count} SMS to its subject")
    for task in snap.tasks:
        if task.tier == "sms" and task.sms_accepted and per_key[task.id] == 0:
            findings.lost.append(f"SMS task {task.id} is recorded as sent, but the gateway has no message for it")


def events_once(snap: Snapshot, findings: Findings) -> None:
    """Each effect that must happen once was committed once: a task's creation, a case's closure, an SMS sent,
    a deadline's breach."""
    for event_type, fields in ONCE_PER.items():
        counts = Counter(tuple(e.data.get(f) for f in fields) for e in snap.events if e.type == event_type)
        for what, count in sorted(counts.items(), key=str):
            if count > 1:
                findings.duplicated.append(f"{event_type} {what}: committed {count} times")
    created = Counter(e.data["task_id"] for e in snap.events if e.type == "task.created")
    for task in snap.tasks:
        if created[task.id] == 0:
            findings.lost.append(f"task {task.id} has no task.created event")
    closed = Counter(e.data["case_id"] for e in snap.events if e.type == "case.closed")
    for case_id, (state, _) in snap.cases.items():
        if state == "closed" and closed[case_id] == 0:
            findings.lost.append(f"case {case_id} is closed without a case.closed event")


def outcomes_once(snap: Snapshot, findings: Findings) -> None:
    for task_id, count in sorted(snap.outcomes.items()):
        if count > 1:
            findings.duplicated.append(f"task {task_id}: {count} outcomes in feedback")


def deadlines_kept(phases: Iterable[Phase], snap: Snapshot, findings: Findings) -> None:
    """None is overdue and unfired; every case is closed or still has a deadline ahead of it."""
    assert snap.now is not None
    for d in snap.deadlines:
        if d.fired_at is None and d.due_at < snap.now - DEADLINE_GRACE:
            findings.lost.append(f"deadline {d.id} ({d.kind}) due {d.due_at.isoformat()} never fired")
    pending_refs = {d.ref for d in snap.deadlines if d.fired_at is None}
    by_case = tasks_by_case(snap)
    for phase in phases:
        for n, warning_id in sorted(phase.acked.items()):
            for case_id in snap.case_of.get(warning_id, []):
                state, _ = snap.cases[case_id]
                refs = {case_id, *(t.id for t in by_case.get(case_id, []))}
                if state != "closed" and not refs & pending_refs:
                    findings.other.append(f"{phase.name} warning {n}: case {case_id} is {state} with no deadline")


def rate_counts(rates: dict[str, Any], source: str) -> dict[str, tuple[int, int]]:
    """(numerator, denominator) of each outcome-based rate of `source`'s group in a `group_by=source` answer."""
    for group in rates["groups"]:
        if group["key"].get("source") == source:
            counts = group["counts"]
            return {name: (counts[name]["numerator"], counts[name]["denominator"]) for name in OUTCOME_RATES}
    return {}


def rates_match(faulty: dict[str, tuple[int, int]], baseline: dict[str, tuple[int, int]], findings: Findings) -> None:
    if not baseline:
        findings.other.append("the fault-free run has no rates")
    for name in OUTCOME_RATES:
        if faulty.get(name) != baseline.get(name):
            findings.other.append(f"{name}: {faulty.get(name)} with faults, {baseline.get(name)} without")


def check_all(faulty: Phase, baseline: Phase, snap: Snapshot) -> Findings:
    findings = Findings()
    for phase in (faulty, baseline):
        warnings_reached_dispatch(phase, snap, findings)
    phantom_cases((faulty, baseline), snap, findings)
    flows_match(faulty, baseline, snap, findings)
    sms_once(snap, findings)
    events_once(snap, findings)
    outcomes_once(snap, findings)
    deadlines_kept((faulty, baseline), snap, findings)
    return findings
