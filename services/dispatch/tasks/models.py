from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from services.dispatch.db import SCHEMA

OPEN_STATUSES = ("open", "acked")


class Task(SQLModel, table=True):
    """One action toward a subject: an SMS, a call attempt, a visit, a grid worker's follow-up."""

    __tablename__ = "tasks"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.cases.id", index=True)
    tier: str = Field(max_length=16)
    attempt: int = 1
    status: str = Field(default="open", max_length=16, index=True)
    area_code: str | None = Field(default=None, max_length=32, index=True)
    station: str | None = Field(default=None, max_length=100, index=True)
    team_id: uuid.UUID | None = Field(default=None, index=True)
    reason: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC), index=True)
    ack_due_at: datetime | None = None
    due_at: datetime
    acked_at: datetime | None = None
    acked_by: str | None = Field(default=None, max_length=64)
    ack_misses: int = 0
    arrived_at: datetime | None = None
    position: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    done_at: datetime | None = None
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))


class TaskSubject(BaseModel):
    phone: str | None
    name: str | None


class TaskPublic(BaseModel):
    """A task as the mobile API shows it (contract §4)."""

    id: uuid.UUID
    case_id: uuid.UUID
    warning_ids: list[uuid.UUID]
    tier: str
    attempt: int
    status: str
    area_code: str | None
    team_id: uuid.UUID | None
    station: str | None
    risk_level: str
    fraud_type: str
    in_progress: bool
    subject: TaskSubject
    created_at: datetime
    ack_due_at: datetime | None
    due_at: datetime
    acked_at: datetime | None


class Arrival(BaseModel):
    lat: float = PydanticField(ge=-90, le=90)
    lon: float = PydanticField(ge=-180, le=180)


class Decline(BaseModel):
    reason: str = PydanticField(min_length=1, max_length=500)
