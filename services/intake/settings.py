from __future__ import annotations

from shared.settings import CommonSettings


class IntakeSettings(CommonSettings):
    intake_host: str = "127.0.0.1"
    intake_port: int = 8001
    max_body_bytes: int = 1024 * 1024
    batch_max_bytes: int = 8 * 1024 * 1024
    batch_max_records: int = 1000
    # A warning issued this far in the future is refused: the upstream's clock is wrong.
    max_clock_skew_s: int = 300
    # How long a source (and its keys) and the known area codes are cached in memory.
    source_cache_ttl_s: float = 5.0
    area_refresh_s: float = 10.0
