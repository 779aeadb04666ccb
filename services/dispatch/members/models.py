from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from services.dispatch.db import SCHEMA
from shared.auth import Role


class MemberCreate(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    username: str = PydanticField(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,63}$")
    name: str = PydanticField(min_length=1, max_length=64)
    role: Role
    team: str | None = PydanticField(default=None, max_length=100, description="team name, for field roles")
    station: str | None = PydanticField(default=None, max_length=100, description="for operators and supervisors")
    district: bool = PydanticField(default=False, description="for admins")
    password: str | None = PydanticField(default=None, description="set one instead of a generated one-time password")


class Member(SQLModel, table=True):
    """A person who logs in: police officer, auxiliary officer, grid worker, 96110 operator, supervisor, admin."""

    __tablename__ = "members"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    display_name: str = Field(max_length=64)
    role: str = Field(max_length=16)
    team_id: uuid.UUID | None = Field(default=None, foreign_key=f"{SCHEMA}.teams.id", index=True)
    station: str | None = Field(default=None, max_length=100, index=True)
    password_hash: str
    active: bool = True
    # Raised when the member is deactivated or their password changes: every token issued before is void.
    session_epoch: int = 0
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    deactivated_at: datetime | None = None


class MemberPublic(BaseModel):
    id: uuid.UUID
    username: str
    display_name: str
    role: str
    team_id: uuid.UUID | None
    station: str | None
    active: bool


class MemberCreated(MemberPublic):
    one_time_password: str | None = None
