from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class SmsGatewaySettings(BaseSettings):
    """The development SMS gateway: no database, no broker, just where it listens."""

    model_config = SettingsConfigDict(env_prefix="QUANZU_", extra="ignore")

    smsgw_host: str = "127.0.0.1"
    smsgw_port: int = 8025
