"""A whole Quanzu on this machine, every service a real process: what `quanzu simulate`, `make bench` and the
fault suite run against.

It owns a database (created on a PostgreSQL you name), its own development broker on a free port unless given one,
and the processes: `quanzu serve intake|dispatch|feedback|smsgw`, dispatch possibly several times (replicas share
the database and the consumer groups). Processes can be killed (SIGKILL) and started again, the broker paused
(SIGSTOP/SIGCONT) or lost (restarted empty), and each process's peak memory read back from the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from shared import migrate
from shared.auth import generate_keypair
from shared.devinfra import Broker, drop_database, ensure_database, free_port, wait_for
from shared.kafka import ensure_topics
from shared.settings import CommonSettings

SERVICES = ("intake", "dispatch", "feedback", "smsgw")


@dataclass
class Process:
    name: str  # e.g. "dispatch-2"
    service: str  # e.g. "dispatch"
    port: int
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    peak_rss_kib: int = 0  # the largest VmHWM seen over every run of this process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class LocalSystem:
    """Start with `async with LocalSystem(...) as system:`; everything it started is stopped on exit."""

    home: Path  # logs, secrets and working directory of the processes
    pg_admin_url: str  # a PostgreSQL superuser URL; the system gets its own database there
    database: str = "quanzu_local"
    bootstrap: str | None = None  # an existing broker; None starts a private one
    replicas: dict[str, int] = field(default_factory=dict)  # processes of a service, if more than one
    env: dict[str, str] = field(default_factory=dict)  # extra QUANZU_* settings for every process
    keep_database: bool = False
    processes: dict[str, Process] = field(default_factory=dict)
    broker: Broker | None = None
    database_url: str = ""
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def url(self, name: str) -> str:
        return self.processes[name].url

    def processes_of(self, service: str) -> list[Process]:
        """The service's processes, its replicas in order."""
        return [p for p in self.processes.values() if p.service == service]

    def urls(self, service: str) -> list[str]:
        return [p.url for p in self.processes_of(service)]

    @property
    def settings(self) -> CommonSettings:
        """What the `quanzu` command's functions (services.cli.admin) need to reach this system."""
        return CommonSettings(
            _env_file=None,
            database_url=self.database_url,
            kafka_bootstrap_servers=self.kafka_bootstrap,
            subject_key_secret=self.env["QUANZU_SUBJECT_KEY_SECRET"],
        )

    @property
    def kafka_bootstrap(self) -> str:
        return self.broker.bootstrap if self.broker is not None else str(self.bootstrap)

    async def __aenter__(self) -> LocalSystem:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        await drop_database(self.pg_admin_url, self.database)
        self.database_url = await ensure_database(self.pg_admin_url, self.database)
        if self.bootstrap is None:
            self.broker = Broker(free_port(), log=self._log("broker"))
            await asyncio.to_thread(self.broker.start)
        await ensure_topics(self.kafka_bootstrap)
        await asyncio.to_thread(migrate.upgrade, self.database_url)
        self.env = {**self._base_env(), **self.env}
        for service in SERVICES:
            for n in range(1, self.replicas.get(service, 1) + 1):
                name = service if n == 1 else f"{service}-{n}"
                self.processes[name] = Process(name, service, free_port())
        for name in self.processes:
            self.spawn(name)
        await asyncio.gather(*(self.wait_ready(name) for name in self.processes))

    def _base_env(self) -> dict[str, str]:
        private, public = self.home / "token_private.pem", self.home / "token_public.pem"
        if not private.exists():
            private_pem, public_pem = generate_keypair()
            private.write_text(private_pem)
            public.write_text(public_pem)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUANZU_")}
        return env | {
            "QUANZU_HOME": str(self.home),
            "QUANZU_DATABASE_URL": self.database_url,
            "QUANZU_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "QUANZU_SUBJECT_KEY_SECRET": "local-system-subject-key-secret",
            "QUANZU_TOKEN_PRIVATE_KEY_FILE": str(private),
            "QUANZU_TOKEN_PUBLIC_KEY_FILE": str(public),
            "QUANZU_AREA_REFRESH_S": "0.5",
            "QUANZU_LOG_LEVEL": "WARNING",
        }

    def _log(self, name: str) -> IO[bytes]:
        self._logs.append((self.logs / f"{name}.log").open("ab"))
        return self._logs[-1]

    def spawn(self, name: str) -> None:
        """Start process `name` (again); it gets the same port, so its clients find it where it was."""
        process = self.processes[name]
        if process.running:
            raise RuntimeError(f"{name} is already running")
        service = process.service.upper()
        env = self.env | {
            f"QUANZU_{service}_HOST": "127.0.0.1",
            f"QUANZU_{service}_PORT": str(process.port),
            "QUANZU_SMS_PROVIDER_URL": self.env.get("QUANZU_SMS_PROVIDER_URL") or self.processes["smsgw"].url,
        }
        process.popen = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "services.cli.main", "serve", process.service],
            env=env,
            cwd=self.home,
            stdout=self._log(name),
            stderr=subprocess.STDOUT,
        )
        process.starts += 1

    async def wait_ready(self, name: str, timeout: float = 90) -> None:
        process = self.processes[name]
        path = "/healthz" if process.service == "smsgw" else "/readyz"

        async def ready() -> bool:
            if not process.running:
                raise RuntimeError(f"{name} exited while starting:\n{self.log_tail(name)}")
            async with httpx.AsyncClient(timeout=2) as client:
                try:
                    return (await client.get(process.url + path)).status_code == 200
                except httpx.HTTPError:
                    return False

        await wait_for(ready, timeout=timeout, interval=0.1, message=f"{name} ready")

    def peak_rss_kib(self, name: str) -> int:
        """The process's peak resident memory (VmHWM) so far, over all its runs."""
        process = self.processes[name]
        if process.running and process.popen is not None:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        process.peak_rss_kib = max(process.peak_rss_kib, int(line.split()[1]))
        return process.peak_rss_kib

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        if process.popen is not None and process.running:
            self.peak_rss_kib(name)
            process.popen.send_signal(sig)
            process.popen.wait()

    async def restart(self, name: str, sig: int = signal.SIGKILL) -> None:
        await asyncio.to_thread(self.kill, name, sig)
        self.spawn(name)
        await self.wait_ready(name)

    def pause_broker(self) -> None:
        assert self.broker is not None and self.broker.process is not None, "the system's own broker is not running"
        self.broker.process.send_signal(signal.SIGSTOP)

    def resume_broker(self) -> None:
        assert self.broker is not None and self.broker.process is not None, "the system's own broker is not running"
        self.broker.process.send_signal(signal.SIGCONT)

    async def lose_broker(self) -> None:
        """Kill the broker and start it again on the same port: empty, as a Kafka cluster that lost its data, with
        its topics created again (as a deployment's topic job would) before any of our processes reconnects.

        The processes are held (SIGSTOP) meanwhile: the first client to reconnect would otherwise create a topic
        with tansu's default 4 partitions, and producers that still know 12 would send to partitions the topic does
        not have, which tansu 0.6.0 acknowledges and no consumer ever reads (Apache Kafka refuses them).
        """
        assert self.broker is not None, "the system's own broker is not running"
        held = [p.popen for p in self.processes.values() if p.running and p.service != "smsgw" and p.popen]
        for popen in held:
            popen.send_signal(signal.SIGSTOP)
        try:
            await asyncio.to_thread(self.broker.stop)
            await asyncio.to_thread(self.broker.start)
            await ensure_topics(self.kafka_bootstrap)
        finally:
            for popen in held:
                popen.send_signal(signal.SIGCONT)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        for name, process in self.processes.items():
            if process.running and process.popen is not None:
                self.peak_rss_kib(name)
                process.popen.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            if process.popen is not None:
                try:
                    await asyncio.to_thread(process.popen.wait, 15)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    await asyncio.to_thread(process.popen.wait)
        if self.broker is not None:
            if self.broker.process is not None:
                self.broker.process.send_signal(signal.SIGCONT)
            await asyncio.to_thread(self.broker.stop)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if not self.keep_database and self.database_url:
            with contextlib.suppress(Exception):
                await drop_database(self.pg_admin_url, self.database)
