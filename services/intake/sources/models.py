from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from services.intake.db import SCHEMA


def _now() -> datetime:
    return datetime.now(UTC)


class SourceCreate(BaseModel):
    name: str = PydanticField(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    rate_per_s: float = PydanticField(default=100.0, gt=0, le=100_000)


class Source(SQLModel, table=True):
    """An upstream warning system (a bank's fund-flow monitor, the 96110 centre, a telecom operator)."""

    __tablename__ = "sources"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    rate_per_s: float
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None


class SourceKey(SQLModel, table=True):
    """An API key of a source; only its SHA-256 is stored. Several may be valid at once (rotation)."""

    __tablename__ = "source_keys"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    source_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.sources.id", index=True)
    key_hash: str = Field(unique=True, max_length=64)
    key_prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None


class SourcePublic(BaseModel):
    name: str
    rate_per_s: float
    created_at: datetime
    revoked_at: datetime | None


class SourceIdentity(BaseModel):
    """Who is calling, as the request handlers need it."""

    name: str
    rate_per_s: float
