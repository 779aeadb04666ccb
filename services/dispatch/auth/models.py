from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Field, SQLModel

from services.dispatch.db import SCHEMA


class RefreshToken(SQLModel, table=True):
    """A refresh token, stored hashed. Each use issues the next of its family; reusing a spent one revokes
    the whole family (the token was stolen, or the client is confused: either way, log in again)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    member_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.members.id", index=True)
    family_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


class LoginThrottle(SQLModel, table=True):
    """Failed logins per username and per client address, shared by every dispatch replica."""

    __tablename__ = "login_throttle"
    __table_args__ = {"schema": SCHEMA}

    key: str = Field(primary_key=True, max_length=200)
    failures: int = 0
    window_started_at: datetime
    locked_until: datetime | None = None


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int
    refresh_token: str
