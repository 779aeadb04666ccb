"""Settings every service shares; each service subclasses `CommonSettings` with its own fields."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where `make run` keeps the embedded database, logs and development secrets.
HOME = Path(os.environ.get("QUANZU_HOME", ".quanzu"))
#: Written by `quanzu run` so that the `quanzu` command reaches the same database and broker.
ENV_FILE = HOME / "env"

DEV_SUBJECT_KEY_SECRET = "development-only-subject-key-secret"  # noqa: S105 (a development default, refused in production)


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUANZU_",
        env_file=str(ENV_FILE),
        env_file_encoding="utf-8",
        extra="ignore",
        # Docker/Kubernetes secrets: a file named after the variable, e.g. /run/secrets/quanzu_subject_key_secret
        secrets_dir=os.environ.get("QUANZU_SECRETS_DIR") or None,
    )

    environment: Literal["development", "production"] = "development"
    database_url: str = ""
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Keys Kafka messages and matches subjects without putting raw phone numbers in keys.
    subject_key_secret: SecretStr = SecretStr(DEV_SUBJECT_KEY_SECRET)
    log_level: str = "INFO"
    timezone: str = "Asia/Shanghai"
    db_pool_size: int = 10
    # Partitions a consumer handles side by side (each in its own transaction; order is kept within a partition).
    consumer_concurrency: int = Field(default=4, ge=1, le=64)
    # Members' access tokens are verified with dispatch's Ed25519 public key (PEM, or a file holding it).
    token_public_key: str = ""
    token_public_key_file: Path | None = None
    # Personal fields of subjects are erased this many days after their case closed (or the warning arrived).
    retention_days: int = Field(default=180, ge=1, le=3650)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The district's time zone: days, weeks, months and bulletins are local ones."""
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> CommonSettings:
        if self.environment == "production":
            if self.subject_key_secret.get_secret_value() == DEV_SUBJECT_KEY_SECRET:
                raise ValueError("QUANZU_SUBJECT_KEY_SECRET must be set in production")
            if not self.database_url:
                raise ValueError("QUANZU_DATABASE_URL must be set in production")
        return self

    def public_key_pem(self) -> str:
        return read_key(self.token_public_key, self.token_public_key_file, "QUANZU_TOKEN_PUBLIC_KEY")

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "QUANZU_DATABASE_URL is not set: start the system with `make run`, or set it "
                "(e.g. postgresql://user@127.0.0.1:5432/quanzu)"
            )
        return self.database_url


def read_key(value: str, path: Path | None, name: str) -> str:
    """A key given inline, else read from its file."""
    if value.strip():
        return value
    if path is not None:
        try:
            return path.read_text()
        except OSError as exc:
            raise RuntimeError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    raise RuntimeError(f"{name} (or {name}_FILE) is not set: start the system with `make run`, or set it")
