from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    field_validator,
    model_validator,
)
from pydantic import (
    Field as PydanticField,
)
from sqlalchemy import Column, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from services.intake.db import SCHEMA
from shared.events import FraudType, Residency, RiskLevel
from shared.instants import in_utc
from shared.personal import normalize_id_number, normalize_phone


class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    phone: str | None = PydanticField(default=None, max_length=32)
    name: str | None = PydanticField(default=None, max_length=64)
    id_number: str | None = PydanticField(default=None, max_length=32)
    address: str | None = PydanticField(default=None, max_length=256)
    residency: Residency = "unknown"

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value else None

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str | None) -> str | None:
        return normalize_id_number(value) if value else None

    @field_validator("name", "address")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _reachable(self) -> SubjectIn:
        if not self.phone and not self.id_number:
            raise ValueError("at least one of subject.phone and subject.id_number is required")
        return self


class EvidenceIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    suspect_numbers: list[str] = PydanticField(default_factory=list, max_length=200)
    accounts: list[str] = PydanticField(default_factory=list, max_length=200)
    urls: list[str] = PydanticField(default_factory=list, max_length=200)
    apps: list[str] = PydanticField(default_factory=list, max_length=200)


class WarningCreate(BaseModel):
    """One warning record as an upstream system posts it (contract §1)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    external_id: str = PydanticField(min_length=1, max_length=128)
    source: str | None = PydanticField(default=None, max_length=64)
    issued_at: AwareDatetime
    subject: SubjectIn
    area_code: str | None = PydanticField(default=None, max_length=32)
    fraud_type: FraudType
    risk_level: RiskLevel
    in_progress: bool = False
    amount_at_risk: float | None = PydanticField(default=None, ge=0, le=1e12)
    evidence: EvidenceIn = PydanticField(default_factory=EvidenceIn)

    @field_validator("issued_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # One instant, one representation: a replay written with another offset is still a duplicate.
        return in_utc(value)

    @field_validator("area_code")
    @classmethod
    def _blank_area_is_none(cls, value: str | None) -> str | None:
        return value or None


class BatchCreate(BaseModel):
    warnings: list[Any]


class Warning(SQLModel, table=True):
    """A stored warning. `subject` holds personal data (normalised); lists and events mask it."""

    __tablename__ = "warnings"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_warnings_source_external_id"),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    source: str = Field(max_length=64)
    external_id: str = Field(max_length=128)
    content_hash: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC), index=True)
    issued_at: datetime
    area_code: str | None = Field(default=None, max_length=32)
    assigned: bool
    fraud_type: str
    risk_level: str
    in_progress: bool
    amount_at_risk: float | None = None
    subject_key: str = Field(max_length=64, index=True)
    subject: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    evidence: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))


class WarningAccepted(BaseModel):
    id: uuid.UUID
    status: str = "accepted"
    duplicate: bool
    assigned: bool
    queue: str | None = None
    detail: str | None = None


class WarningPublic(BaseModel):
    id: uuid.UUID
    source: str
    external_id: str
    received_at: datetime
    issued_at: datetime
    area_code: str | None
    assigned: bool
    fraud_type: str
    risk_level: str
    in_progress: bool
    amount_at_risk: float | None
    subject: dict[str, Any]
    evidence: dict[str, Any]
