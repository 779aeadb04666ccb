from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel

from services.intake.db import SCHEMA


class KnownArea(SQLModel, table=True):
    """Intake's copy of the area registry (owned by dispatch), kept from `registry.events`."""

    __tablename__ = "areas"
    __table_args__ = {"schema": SCHEMA}

    area_code: str = Field(primary_key=True, max_length=32)
    active: bool = True
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
