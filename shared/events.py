"""The event envelope, topic names and the versioned event payloads that cross service boundaries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, get_args

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Topic(StrEnum):
    WARNINGS_RECEIVED = "warnings.received"
    DISPATCH_EVENTS = "dispatch.events"
    FEEDBACK_OUTCOMES = "feedback.outcomes"
    # Not in the contract's table: the area registry's changes, owned by dispatch (docs/ARCHITECTURE.md).
    REGISTRY_EVENTS = "registry.events"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


#: Partitions each topic is created with. Keys keep one subject's / one case's events in order.
TOPIC_PARTITIONS: dict[str, int] = {
    Topic.WARNINGS_RECEIVED: 12,
    Topic.DISPATCH_EVENTS: 12,
    Topic.FEEDBACK_OUTCOMES: 12,
    # One partition: registry changes are few and must apply in order.
    Topic.REGISTRY_EVENTS: 1,
    **{dead_letter_topic(t): 1 for t in Topic},
}


class Envelope(BaseModel):
    """CloudEvents-shaped envelope of every Kafka message value (contract §2)."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    type: str = Field(min_length=1, max_length=100)
    source: str = Field(min_length=1, max_length=100)
    time: AwareDatetime
    subject: str | None = None
    schema_version: int = Field(default=1, ge=1)
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def new(
        cls, type: str, source: str, data: BaseModel, *, subject: str | None = None, schema_version: int = 1
    ) -> Envelope:
        # Built, not validated: every field is made here or is an already validated payload's dump, and on the
        # hot paths (intake stores one of these per warning) validating it again cost as much as building it.
        return cls.model_construct(
            id=uuid.uuid4(),
            type=type,
            source=source,
            time=datetime.now(UTC),
            subject=subject,
            schema_version=schema_version,
            data=data.model_dump(mode="json"),
        )


def envelope_json(
    type: str, source: str, data: dict[str, Any], *, subject: str | None = None, schema_version: int = 1
) -> tuple[uuid.UUID, bytes]:
    """A new envelope's id and its serialised form, as `Envelope.new(...).to_bytes()` writes it, for a hot path whose
    `data` is already the payload model's JSON form (values its own validation produced): one pass in C instead of
    building two models. Intake stores one per warning; a unit test holds the two ways to the same result."""
    event_id = uuid.uuid4()
    envelope = {
        "id": event_id,
        "type": type,
        "source": source,
        "time": datetime.now(UTC),
        "subject": subject,
        "schema_version": schema_version,
        "data": data,
    }
    return event_id, orjson.dumps(envelope, option=orjson.OPT_UTC_Z)


Residency = Literal["resident", "worker", "transit", "unknown"]
FraudType = Literal[
    "task_rebate",
    "investment",
    "loan",
    "customer_service",
    "impersonate_officials",
    "impersonate_acquaintance",
    "romance",
    "game_trade",
    "other",
]
RiskLevel = Literal["low", "medium", "high", "critical"]
FRAUD_TYPES: tuple[str, ...] = get_args(FraudType)
RISK_LEVELS: tuple[str, ...] = get_args(RiskLevel)
RESIDENCIES: tuple[str, ...] = get_args(Residency)


class SubjectData(BaseModel):
    phone: str | None = None
    name: str | None = None
    id_number: str | None = None
    address: str | None = None
    residency: Residency = "unknown"


class WarningReceivedV1(BaseModel):
    """`warning.received` on `warnings.received`: the only event that carries raw personal data."""

    TYPE: ClassVar = "warning.received"

    warning_id: uuid.UUID
    source: str
    external_id: str
    issued_at: datetime
    received_at: datetime
    subject: SubjectData
    subject_key: str
    area_code: str | None
    assigned: bool
    fraud_type: FraudType
    risk_level: RiskLevel
    in_progress: bool
    amount_at_risk: float | None
    evidence: dict[str, Any]


class AreaUpsertedV1(BaseModel):
    """`area.upserted` on `registry.events`: an area was created or changed in the registry."""

    TYPE: ClassVar = "area.upserted"

    area_code: str
    area_name: str
    station: str
    street: str
    district: str
    active: bool = True


class MemberChangedV1(BaseModel):
    """`member.changed` on `registry.events`: lets intake and feedback end a deactivated member's sessions."""

    TYPE: ClassVar = "member.changed"

    member_id: uuid.UUID
    active: bool
    session_epoch: int


# --- dispatch.events: ids, areas and enumerations only; never personal data -----------------------------------


class CaseOpenedV1(BaseModel):
    TYPE: ClassVar = "case.opened"

    case_id: uuid.UUID
    warning_id: uuid.UUID
    subject_key: str
    source: str
    area_code: str | None
    station: str | None
    street: str | None
    risk_level: RiskLevel
    fraud_type: FraudType
    in_progress: bool
    residency: Residency
    rewarned: bool
    opened_at: datetime
    # When intake received the opening warning: the time rates are windowed by (contract §5). Optional so that
    # events published before it was added still validate; readers fall back to opened_at.
    warning_received_at: datetime | None = None


class CaseJoinedV1(BaseModel):
    """A further warning for a subject whose case is open: it joins the case (and may raise its risk)."""

    TYPE: ClassVar = "case.joined"

    case_id: uuid.UUID
    warning_id: uuid.UUID
    source: str
    risk_level: RiskLevel
    at: datetime


class TaskCreatedV1(BaseModel):
    TYPE: ClassVar = "task.created"

    task_id: uuid.UUID
    case_id: uuid.UUID
    tier: str
    attempt: int
    area_code: str | None
    station: str | None
    team_id: uuid.UUID | None
    created_at: datetime
    due_at: datetime
    ack_due_at: datetime | None
    reason: str


class TaskAssignedV1(BaseModel):
    TYPE: ClassVar = "task.assigned"

    task_id: uuid.UUID
    case_id: uuid.UUID
    team_id: uuid.UUID | None
    station: str | None
    by: str
    at: datetime


class TaskEscalatedV1(BaseModel):
    TYPE: ClassVar = "task.escalated"

    case_id: uuid.UUID
    from_tier: str
    to_tier: str
    reason: str
    at: datetime


class SmsSentV1(BaseModel):
    TYPE: ClassVar = "sms.sent"

    task_id: uuid.UUID
    case_id: uuid.UUID
    accepted: bool
    at: datetime


class SlaBreachedV1(BaseModel):
    TYPE: ClassVar = "sla.breached"

    task_id: uuid.UUID | None
    case_id: uuid.UUID
    tier: str
    kind: str  # "due" (not done in time), "ack" (not acknowledged in time), "unassigned"
    area_code: str | None
    due_at: datetime
    at: datetime


class CaseClosedV1(BaseModel):
    TYPE: ClassVar = "case.closed"

    case_id: uuid.UUID
    closure: str
    area_code: str | None
    at: datetime


# --- feedback.outcomes --------------------------------------------------------------------------------------


class OutcomeRecordedV1(BaseModel):
    """`outcome.recorded` on `feedback.outcomes`: what happened when a member acted on a task."""

    TYPE: ClassVar = "outcome.recorded"

    outcome_id: uuid.UUID
    task_id: uuid.UUID
    case_id: uuid.UUID | None = None
    kind: Literal["sms", "call", "visit", "follow_up"]
    call_result: Literal["connected", "no_answer", "busy", "powered_off", "invalid_number", "rejected"] | None = None
    dissuasion_result: (
        Literal["dissuaded", "not_dissuaded", "already_defrauded", "not_met", "false_positive"] | None
    ) = None
    recorded_at: datetime
    recorded_by: str | None = None
    # Set on a correction: the outcome it replaces. Dispatch does not re-run the flow for it (the flow has moved
    # on) but does re-close a case whose closure came from the corrected result.
    corrects: uuid.UUID | None = None
    correction_reason: str | None = None


# --- what each topic carries ----------------------------------------------------------------------------------

#: What dispatch publishes on `dispatch.events`.
DispatchEvent = (
    CaseOpenedV1 | CaseJoinedV1 | TaskCreatedV1 | TaskAssignedV1 | TaskEscalatedV1 | SmsSentV1 | SlaBreachedV1
    | CaseClosedV1
)  # fmt: skip
_DISPATCH_EVENTS: list[str] = [event.TYPE for event in get_args(DispatchEvent)]

#: The event types each topic carries, with the newest `schema_version` of each that this code reads. A consumer
#: skips a listed type it has no use for; a type not listed, or a newer version, it cannot read at all.
TOPIC_EVENTS: dict[str, dict[str, int]] = {
    Topic.WARNINGS_RECEIVED: {WarningReceivedV1.TYPE: 1},
    Topic.DISPATCH_EVENTS: dict.fromkeys(_DISPATCH_EVENTS, 1),
    Topic.FEEDBACK_OUTCOMES: {OutcomeRecordedV1.TYPE: 1},
    Topic.REGISTRY_EVENTS: {AreaUpsertedV1.TYPE: 1, MemberChangedV1.TYPE: 1},
}


def unreadable(topic: str, envelope: Envelope) -> str | None:
    """Why no consumer of `topic` can handle `envelope` (so it belongs on the dead-letter topic), or None.

    Dropping such a message silently would lose it; handling a newer version as the old one would misread it.
    Topics not listed in TOPIC_EVENTS take any type.
    """
    known = TOPIC_EVENTS.get(topic)
    if known is None:
        return None
    newest = known.get(envelope.type)
    if newest is None:
        return f"unknown event type {envelope.type!r} on {topic}"
    if envelope.schema_version > newest:
        return f"{envelope.type} schema_version {envelope.schema_version} is newer than this consumer reads ({newest})"
    return None
