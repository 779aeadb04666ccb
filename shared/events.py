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
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def new(
        cls, type: str, source: str, data: BaseModel, *, subject: str | None = None, schema_version: int = 1
    ) -> Envelope:
        return cls(
            id=uuid.uuid4(),
            type=type,
            source=source,
            time=datetime.now(UTC),
            subject=subject,
            schema_version=schema_version,
            data=data.model_dump(mode="json"),
        )


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
