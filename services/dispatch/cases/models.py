from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from services.dispatch.db import SCHEMA

CaseState = str  # opened | sms | calling | visiting | follow_up | closed
TIER_STATE = {"sms": "sms", "call": "calling", "visit": "visiting", "follow_up": "follow_up"}
STATE_RANK = {"opened": 0, "sms": 1, "calling": 2, "visiting": 3, "follow_up": 4, "closed": 5}


def _now() -> datetime:
    return datetime.now(UTC)


class Case(SQLModel, table=True):
    """One potential victim's dissuasion, from the first warning to a closure. Holds personal data."""

    __tablename__ = "cases"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    subject_key: str = Field(max_length=64, index=True)
    subject: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    area_code: str | None = Field(default=None, max_length=32, index=True)
    station: str | None = Field(default=None, max_length=100, index=True)
    street: str | None = Field(default=None, max_length=100)
    risk_level: str = Field(max_length=16)
    fraud_type: str = Field(max_length=32)
    in_progress: bool = False
    residency: str = Field(default="unknown", max_length=16)
    state: str = Field(default="opened", max_length=16, index=True)
    closure: str | None = Field(default=None, max_length=32)
    rewarned: bool = False
    source: str = Field(max_length=64)
    # The policy versions the case started under, and the values they give at its current risk level.
    policy_version_ids: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    policy: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    opened_at: datetime = Field(default_factory=_now, index=True)
    assigned_at: datetime | None = None
    first_contact_at: datetime | None = None
    last_warning_at: datetime = Field(default_factory=_now)
    closed_at: datetime | None = Field(default=None, index=True)


class CaseWarning(SQLModel, table=True):
    __tablename__ = "case_warnings"
    __table_args__ = {"schema": SCHEMA}

    warning_id: uuid.UUID = Field(primary_key=True)
    case_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.cases.id", index=True)
    source: str = Field(max_length=64)
    risk_level: str = Field(max_length=16)
    received_at: datetime


class CaseTransition(SQLModel, table=True):
    """The case's timeline: every change of state, who or what made it, and why."""

    __tablename__ = "case_transitions"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.cases.id", index=True)
    at: datetime = Field(default_factory=_now)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    actor: str = Field(max_length=100)
    reason: str = Field(max_length=500)


class TransitionPublic(BaseModel):
    at: datetime
    from_state: str
    to_state: str
    actor: str
    reason: str
