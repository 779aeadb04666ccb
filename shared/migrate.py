"""Alembic migrations, one history per service, each in its own PostgreSQL schema."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from shared.db import sqlalchemy_url

SERVICES = ("intake", "dispatch", "feedback")
_ROOT = Path(__file__).resolve().parent.parent / "services"


def alembic_config(service: str, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_ROOT / service / "migrations"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["service"] = service
    return cfg


def upgrade(database_url: str, services: tuple[str, ...] = SERVICES) -> None:
    for service in services:
        command.upgrade(alembic_config(service, database_url), "head")


def run_env() -> None:
    """The body of every service's migrations/env.py."""
    cfg = context.config
    service: str = cfg.attributes["service"]
    importlib.import_module(f"services.{service}.models")  # registers the service's tables

    def include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        schema = getattr(obj, "schema", None)
        return type_ != "table" or schema == service

    def run(connection: sa.Connection) -> None:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{service}"'))
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            version_table_schema=service,
            include_schemas=True,
            include_object=include,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(sqlalchemy_url(cfg.attributes["database_url"]))
        try:
            async with engine.begin() as conn:
                # Two processes migrating at once (two replicas starting) take turns.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262771)"))
                await conn.run_sync(run)
        finally:
            await engine.dispose()

    asyncio.run(main())
