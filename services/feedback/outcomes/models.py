import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import Column, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from services.feedback.db import SCHEMA
from shared.instants import Instant

Kind = Literal["sms", "call", "visit", "follow_up"]
CallResult = Literal["connected", "no_answer", "busy", "powered_off", "invalid_number", "rejected"]
DissuasionResult = Literal["dissuaded", "not_dissuaded", "already_defrauded", "not_met", "false_positive"]


class Checklist(BaseModel):
    """四查看、三询问、一保护: what the team checked, asked and did at the door."""

    model_config = ConfigDict(extra="forbid")

    checked_call_log: bool = False
    checked_sms: bool = False
    checked_apps: bool = False
    checked_transfers: bool = False
    asked_stranger_contact: bool = False
    asked_money_sent: bool = False
    asked_codes_shared: bool = False
    antifraud_app_installed: bool = False


class Position(BaseModel):
    lat: float = PydanticField(ge=-90, le=90)
    lon: float = PydanticField(ge=-180, le=180)


class OutcomeCreate(BaseModel):
    """What a member records when they finish a task (contract §4)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    task_id: uuid.UUID
    kind: Kind
    call_result: CallResult | None = None
    dissuasion_result: DissuasionResult | None = None
    loss_prevented: float | None = PydanticField(default=None, ge=0, le=1e12)
    note: str | None = PydanticField(default=None, max_length=2000)
    recorded_at: Instant | None = None
    checklist: Checklist | None = None
    position: Position | None = None
    # An explicit correction names the outcome it replaces and says why; the original is kept.
    corrects: uuid.UUID | None = None
    correction_reason: str | None = PydanticField(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _fits_kind(self) -> "OutcomeCreate":
        if (self.corrects is None) != (self.correction_reason is None):
            raise ValueError("correction_reason: a correction names the outcome it corrects and gives a reason")
        if self.kind == "call" and self.call_result is None:
            raise ValueError("call_result: a call outcome needs a call_result")
        if self.kind in ("visit", "follow_up") and self.dissuasion_result is None:
            raise ValueError(f"dissuasion_result: a {self.kind} outcome needs a dissuasion_result")
        if self.kind == "call" and self.call_result != "connected" and self.dissuasion_result is not None:
            raise ValueError("dissuasion_result: only a connected call can have dissuaded anyone")
        if self.kind != "call" and self.call_result is not None:
            raise ValueError(f"call_result: a {self.kind} outcome has no call_result")
        if self.kind != "visit" and (self.checklist is not None or self.position is not None):
            raise ValueError("checklist: only a visit outcome carries the field checklist and position")
        return self


class Outcome(SQLModel, table=True):
    __tablename__ = "outcomes"
    __table_args__ = (
        Index("uq_outcomes_current_per_task", "task_id", unique=True, postgresql_where=text("superseded_by IS NULL")),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # One current outcome per task (a partial unique index); corrections keep the ones they replace.
    task_id: uuid.UUID = Field(index=True)
    case_id: uuid.UUID = Field(index=True)
    area_code: str | None = Field(default=None, max_length=32, index=True)
    kind: str = Field(max_length=16)
    call_result: str | None = Field(default=None, max_length=32)
    dissuasion_result: str | None = Field(default=None, max_length=32)
    loss_prevented: float | None = None
    note: str | None = Field(default=None, max_length=2000)
    checklist: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    position: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    recorded_at: datetime
    recorded_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    corrects: uuid.UUID | None = None
    correction_reason: str | None = Field(default=None, max_length=500)
    superseded_by: uuid.UUID | None = None
    superseded_at: datetime | None = None


class OutcomePublic(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    case_id: uuid.UUID
    kind: str
    call_result: str | None
    dissuasion_result: str | None
    loss_prevented: float | None
    recorded_at: datetime
    recorded_by: str
    checklist: Checklist | None = None
    corrects: uuid.UUID | None = None
    correction_reason: str | None = None
    superseded_by: uuid.UUID | None = None
