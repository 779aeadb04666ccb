"""Feedback's read model of dispatch's tasks, built from dispatch.events (feedback never reads dispatch's tables)."""

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from services.feedback.db import SCHEMA


class TaskView(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = {"schema": SCHEMA}

    task_id: uuid.UUID = Field(primary_key=True)
    case_id: uuid.UUID = Field(index=True)
    tier: str = Field(max_length=16)
    attempt: int
    area_code: str | None = Field(default=None, max_length=32, index=True)
    station: str | None = Field(default=None, max_length=100)
    team_id: uuid.UUID | None = None
    created_at: datetime
    due_at: datetime = Field(index=True)
    # When the SMS provider accepted it (sms tasks complete then) and when dispatch declared it overdue.
    sms_at: datetime | None = None
    breached_at: datetime | None = None
    # When it was done: the SMS accepted, or the first outcome recorded (a correction does not move it).
    completed_at: datetime | None = None
