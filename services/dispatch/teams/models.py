from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from services.dispatch.areas.models import AREA_CODE_PATTERN
from services.dispatch.db import SCHEMA


class TeamCreate(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    name: str = PydanticField(min_length=1, max_length=100)
    area_code: str = PydanticField(pattern=AREA_CODE_PATTERN)
    backup: bool = False


class Team(SQLModel, table=True):
    """A visit team (民警+辅警+网格员) of a police area; a backup team stands in for its station."""

    __tablename__ = "teams"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    area_code: str = Field(foreign_key=f"{SCHEMA}.areas.area_code", max_length=32, index=True)
    station: str = Field(max_length=100, index=True)
    backup: bool = False
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class TeamPublic(BaseModel):
    id: uuid.UUID
    name: str
    area_code: str
    station: str
    backup: bool
