from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from services.dispatch.db import SCHEMA

AREA_CODE_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,31}$"


class AreaCreate(BaseModel):
    """A row of the area registry: a police area (警务区) with its station (派出所), street (街道) and district."""

    model_config = ConfigDict(str_strip_whitespace=True, frozen=True)

    area_code: str = PydanticField(pattern=AREA_CODE_PATTERN)
    area_name: str = PydanticField(min_length=1, max_length=100)
    station: str = PydanticField(min_length=1, max_length=100)
    street: str = PydanticField(min_length=1, max_length=100)
    district: str = PydanticField(min_length=1, max_length=100)


class Area(SQLModel, table=True):
    """The area registry. Dispatch owns it; intake and feedback keep copies from `registry.events`."""

    __tablename__ = "areas"
    __table_args__ = {"schema": SCHEMA}

    area_code: str = Field(primary_key=True, max_length=32)
    area_name: str = Field(max_length=100)
    station: str = Field(max_length=100, index=True)
    street: str = Field(max_length=100, index=True)
    district: str = Field(max_length=100)
    active: bool = True
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class AreaPublic(BaseModel):
    area_code: str
    area_name: str
    station: str
    street: str
    district: str
    active: bool
