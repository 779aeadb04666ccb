from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from shared.settings import CommonSettings


class FeedbackSettings(CommonSettings):
    feedback_host: str = "127.0.0.1"
    feedback_port: int = 8003
    # 预警后发案: a crime report counts against a warning if it comes within this many days after it (contract §5).
    post_warning_window_days: int = Field(default=30, ge=1, le=365)

    @property
    def post_warning_window(self) -> timedelta:
        return timedelta(days=self.post_warning_window_days)
