"""Feedback's read model of cases and warnings, built from dispatch.events and warnings.received.

Feedback never reads dispatch's or intake's tables; these rows are rebuilt by replaying the topics.
"""

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from services.feedback.db import SCHEMA


class CaseView(SQLModel, table=True):
    __tablename__ = "cases"
    __table_args__ = {"schema": SCHEMA}

    case_id: uuid.UUID = Field(primary_key=True)
    warning_id: uuid.UUID
    # When intake received the opening warning: rates are windowed by it (contract §5).
    received_at: datetime = Field(index=True)
    opened_at: datetime
    area_code: str | None = Field(default=None, max_length=32, index=True)
    station: str | None = Field(default=None, max_length=100)
    street: str | None = Field(default=None, max_length=100)
    team_id: uuid.UUID | None = None
    source: str = Field(max_length=64)
    fraud_type: str = Field(max_length=32)
    risk_level: str = Field(max_length=16)
    closure: str | None = Field(default=None, max_length=32)
    closed_at: datetime | None = None
    # The case's current outcomes, summed (cases/repository.py refresh_summary): the rates read one row per case
    # instead of joining outcomes, which keeps a month of a district's cases well under a second.
    calls: int = 0
    connected_calls: int = 0
    visits: int = 0
    visits_met: int = 0
    visits_judged: int = 0  # finished visits less false positives
    visits_dissuaded: int = 0
    visits_checked: int = 0  # finished visits with the door checklist
    visits_app_installed: int = 0
    first_sms_at: datetime | None = None
    first_call_at: datetime | None = None  # the first connected call
    first_visit_at: datetime | None = None  # the first visit that met the person


class WarningView(SQLModel, table=True):
    """A warning as feedback needs it to count post-warning cases: keyed hashes of the subject's phone and ID
    number (never the numbers), the intake time, and its case once dispatch has placed it. Either topic may
    deliver first, so every column but the id fills in when its event arrives."""

    __tablename__ = "warnings"
    __table_args__ = {"schema": SCHEMA}

    warning_id: uuid.UUID = Field(primary_key=True)
    case_id: uuid.UUID | None = Field(default=None, index=True)
    received_at: datetime | None = Field(default=None, index=True)
    subject_key: str | None = Field(default=None, max_length=64)
    phone_key: str | None = Field(default=None, max_length=64, index=True)
    id_key: str | None = Field(default=None, max_length=64, index=True)
    source: str | None = Field(default=None, max_length=64)
    fraud_type: str | None = Field(default=None, max_length=32)
    area_code: str | None = Field(default=None, max_length=32, index=True)
    station: str | None = Field(default=None, max_length=100)
    # A crime report matched it within the window (post_warning_matches holds which).
    matched: bool = False
