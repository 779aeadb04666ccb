from __future__ import annotations

from shared.settings import CommonSettings


class DispatchSettings(CommonSettings):
    dispatch_host: str = "127.0.0.1"
    dispatch_port: int = 8002
