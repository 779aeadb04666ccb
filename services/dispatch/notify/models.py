from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlmodel import Field, SQLModel

from services.dispatch.db import SCHEMA


class Notification(SQLModel, table=True):
    """Who was told what, when: recorded by the development notifier (a push channel replaces the delivery,
    not the record). Recorded in the transaction of its cause, so it happens exactly once with it."""

    __tablename__ = "notifications"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC), index=True)
    recipient_kind: str = Field(max_length=16)  # team | station | supervisors | district
    recipient: str = Field(max_length=100, index=True)  # a team id, a station name, or "district"
    kind: str = Field(max_length=32)  # task.new | task.renotify | supervisor.alert | case.unassigned
    case_id: uuid.UUID | None = Field(default=None, index=True)
    task_id: uuid.UUID | None = Field(default=None, index=True)
    message: str = Field(max_length=500)


class NotificationPublic(BaseModel):
    id: uuid.UUID
    at: datetime
    recipient_kind: str
    recipient: str
    kind: str
    case_id: uuid.UUID | None
    task_id: uuid.UUID | None
    message: str
