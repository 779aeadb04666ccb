from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from services.dispatch.db import SCHEMA

DEFAULT_SCOPE = "default"


class PolicyVersion(SQLModel, table=True):
    """One version of an area's policy file (or the district default's). Versions are never changed: a case
    keeps the version it started under, and a new file makes a new version."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("scope", "version", name="uq_policies_scope_version"), {"schema": SCHEMA})

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    scope: str = Field(max_length=32, index=True)  # an area code, or "default" for the district
    version: int
    body: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    created_by: str = Field(max_length=64)


class PolicyPublic(BaseModel):
    scope: str
    version: int
    body: dict[str, Any]
    created_at: datetime
    created_by: str


class EffectivePolicy(BaseModel):
    """What `policy show` answers: the files in force and the values a case of each risk level gets."""

    area_code: str
    area: PolicyPublic | None
    default: PolicyPublic | None
    effective: dict[str, dict[str, Any]]
