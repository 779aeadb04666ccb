from datetime import UTC, datetime

from sqlmodel import Field, SQLModel

from services.feedback.db import SCHEMA


class AreaView(SQLModel, table=True):
    """Feedback's copy of the area registry (owned by dispatch): names for the bulletin, streets for ranking."""

    __tablename__ = "areas"
    __table_args__ = {"schema": SCHEMA}

    area_code: str = Field(primary_key=True, max_length=32)
    area_name: str = Field(max_length=100)
    station: str = Field(max_length=100)
    street: str = Field(max_length=100)
    active: bool = True
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
