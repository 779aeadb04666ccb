from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from shared.settings import CommonSettings


class FeedbackSettings(CommonSettings):
    feedback_host: str = "127.0.0.1"
    feedback_port: int = 8003
    # 预警后发案: a crime report counts against a warning if it comes within this many days after it (contract §5).
    post_warning_window_days: int = Field(default=30, ge=1, le=365)
    # Days, weeks, months and the monthly bulletin are the district's local ones.
    district_timezone: str = "Asia/Shanghai"

    @field_validator("district_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from None
        return value

    @property
    def post_warning_window(self) -> timedelta:
        return timedelta(days=self.post_warning_window_days)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.district_timezone)
