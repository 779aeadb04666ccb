from __future__ import annotations

from shared.settings import CommonSettings


class FeedbackSettings(CommonSettings):
    feedback_host: str = "127.0.0.1"
    feedback_port: int = 8003
