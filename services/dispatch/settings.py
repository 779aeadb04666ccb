from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import CommonSettings, read_key


class DispatchSettings(CommonSettings):
    dispatch_host: str = "127.0.0.1"
    dispatch_port: int = 8002
    token_private_key: SecretStr = SecretStr("")
    token_private_key_file: Path | None = None
    access_token_ttl_s: int = Field(default=900, ge=30, le=900)
    refresh_token_ttl_s: int = Field(default=7 * 86400, ge=3600, le=90 * 86400)
    # The SMS provider's HTTP API (the development gateway by default) and how long one send may keep trying.
    sms_provider_url: str = "http://127.0.0.1:8025"
    sms_api_key: SecretStr = SecretStr("")
    sms_deadline_s: float = Field(default=30.0, gt=0, le=300)
    # SMS sent at once per process: a provider that is down holds each sender for up to sms_deadline_s.
    sms_concurrency: int = Field(default=4, ge=1, le=64)

    def private_key_pem(self) -> str:
        value = self.token_private_key.get_secret_value()
        return read_key(value, self.token_private_key_file, "QUANZU_TOKEN_PRIVATE_KEY")
