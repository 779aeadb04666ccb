"""Crime reports from the upstream feed, matched to earlier warnings to count post-warning cases (预警后发案)."""

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from services.feedback.db import SCHEMA
from shared.events import FraudType
from shared.instants import Instant


def _now() -> datetime:
    return datetime.now(UTC)


class ReportSubject(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str | None = PydanticField(default=None, max_length=32)
    id_number: str | None = PydanticField(default=None, max_length=32)


class FraudReportCreate(BaseModel):
    """`POST /v1/fraud-reports` (contract §4)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: str = PydanticField(min_length=1, max_length=128)
    reported_at: Instant
    subject: ReportSubject
    loss: float | None = PydanticField(default=None, ge=0, le=1e12)
    fraud_type: FraudType | None = None

    @model_validator(mode="after")
    def _names_someone(self) -> "FraudReportCreate":
        if not self.subject.phone and not self.subject.id_number:
            raise ValueError("subject: a report needs the victim's phone or id_number to be matched")
        return self


class ReportFeed(SQLModel, table=True):
    """An upstream system allowed to post crime reports; its API key is stored hashed."""

    __tablename__ = "report_feeds"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    key_hash: str = Field(max_length=64, unique=True)
    key_prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None


class FraudReport(SQLModel, table=True):
    """A crime report, holding keyed hashes of the victim's phone and ID number, never the numbers."""

    __tablename__ = "fraud_reports"
    __table_args__ = (UniqueConstraint("feed", "external_id"), {"schema": SCHEMA})

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    feed: str = Field(max_length=64)
    external_id: str = Field(max_length=128)
    reported_at: datetime = Field(index=True)
    phone_key: str | None = Field(default=None, max_length=64, index=True)
    id_key: str | None = Field(default=None, max_length=64, index=True)
    loss: float | None = None
    fraud_type: str | None = Field(default=None, max_length=32)
    content_hash: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=_now)


class PostWarningMatch(SQLModel, table=True):
    """A warning followed, within the matching window, by a crime report on the same phone or ID number."""

    __tablename__ = "post_warning_matches"
    __table_args__ = {"schema": SCHEMA}

    warning_id: uuid.UUID = Field(primary_key=True)
    report_id: uuid.UUID = Field(primary_key=True, index=True)
    matched_at: datetime = Field(default_factory=_now)


class FraudReportPublic(BaseModel):
    id: uuid.UUID
    external_id: str
    reported_at: datetime
    status: str  # "created" | "duplicate"
