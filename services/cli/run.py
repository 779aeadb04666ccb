"""`quanzu run`: the whole system on one machine, on embedded infrastructure unless configured otherwise."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from services.cli import admin
from shared import migrate
from shared.auth import generate_keypair
from shared.devinfra import Broker, ensure_database, port_is_free, start_postgres
from shared.kafka import ensure_topics
from shared.settings import ENV_FILE, HOME, CommonSettings


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def service_specs() -> list[ServiceSpec]:
    return [
        ServiceSpec("intake", int(os.environ.get("QUANZU_INTAKE_PORT", "8001"))),
        ServiceSpec("dispatch", int(os.environ.get("QUANZU_DISPATCH_PORT", "8002"))),
        ServiceSpec("feedback", int(os.environ.get("QUANZU_FEEDBACK_PORT", "8003"))),
        ServiceSpec("smsgw", int(os.environ.get("QUANZU_SMSGW_PORT", "8025"))),
    ]


class Stop(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop


def _secret(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _token_keys() -> dict[str, str]:
    """Development signing keys for members' tokens, generated once under QUANZU_HOME."""
    if os.environ.get("QUANZU_TOKEN_PRIVATE_KEY") or os.environ.get("QUANZU_TOKEN_PRIVATE_KEY_FILE"):
        return {}
    private, public = HOME / "token_private.pem", HOME / "token_public.pem"
    if not private.exists():
        private_pem, public_pem = generate_keypair()
        private.write_text(private_pem)
        private.chmod(0o600)
        public.write_text(public_pem)
    return {
        "QUANZU_TOKEN_PRIVATE_KEY_FILE": str(private.resolve()),
        "QUANZU_TOKEN_PUBLIC_KEY_FILE": str(public.resolve()),
    }


def _write_env_file(values: dict[str, str]) -> None:
    lines = [
        "# Written by `quanzu run` so that the `quanzu` command reaches this system. Development only.",
        *(f"{k}={v}" for k, v in values.items()),
    ]
    ENV_FILE.write_text("\n".join(lines) + "\n")
    ENV_FILE.chmod(0o600)


def _wait_ready(specs: list[ServiceSpec], procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = {s.name: s for s in specs}
    with httpx.Client(timeout=2) as client:
        while pending:
            for name, spec in list(pending.items()):
                if procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited while starting: see {HOME / 'logs' / (name + '.log')}")
                try:
                    if client.get(f"{spec.url}/readyz").status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(pending)} (see {HOME / 'logs'})")
            time.sleep(0.2)


def run(*, load_demo: bool = True, simulate_hours: float | None = None) -> int:
    HOME.mkdir(exist_ok=True)
    logs = HOME / "logs"
    logs.mkdir(exist_ok=True)
    specs = service_specs()
    for spec in specs:
        if not port_is_free(spec.port):
            print(f"port {spec.port} ({spec.name}) is in use: stop what uses it or set QUANZU_{spec.name.upper()}_PORT")
            return 1
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    pg: Any = None
    broker: Broker | None = None
    procs: dict[str, subprocess.Popen[bytes]] = {}
    simulation: subprocess.Popen[bytes] | None = None
    log_files: list[IO[bytes]] = []
    try:
        database_url = os.environ.get("QUANZU_DATABASE_URL", "")
        if not database_url:
            print(f"• starting the embedded PostgreSQL (data in {HOME / 'pg'})")
            pg, admin_url = start_postgres(HOME / "pg")
            database_url = asyncio.run(ensure_database(admin_url, "quanzu"))
        bootstrap = os.environ.get("QUANZU_KAFKA_BOOTSTRAP_SERVERS", "")
        if not bootstrap:
            port = int(os.environ.get("QUANZU_BROKER_PORT", "9092"))
            if not port_is_free(port):
                print(
                    f"port {port} (broker) is in use: stop what uses it, set QUANZU_BROKER_PORT, "
                    "or point QUANZU_KAFKA_BOOTSTRAP_SERVERS at your Kafka"
                )
                return 1
            print(f"• starting the development broker (tansu) on 127.0.0.1:{port}")
            broker_log = (logs / "broker.log").open("ab")
            log_files.append(broker_log)
            broker = Broker(port, log=broker_log)
            broker.start()
            bootstrap = broker.bootstrap
        values = {
            "QUANZU_DATABASE_URL": database_url,
            "QUANZU_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "QUANZU_SUBJECT_KEY_SECRET": os.environ.get("QUANZU_SUBJECT_KEY_SECRET")
            or _secret(HOME / "subject_key_secret"),
            **_token_keys(),
        }
        _write_env_file(values)
        gateway = next(s for s in specs if s.name == "smsgw")
        env = {
            **os.environ,
            **values,
            "QUANZU_SMS_PROVIDER_URL": os.environ.get("QUANZU_SMS_PROVIDER_URL", gateway.url),
        }
        print("• applying migrations")
        migrate.upgrade(database_url)
        asyncio.run(ensure_topics(bootstrap))
        for spec in specs:
            log = (logs / f"{spec.name}.log").open("ab")
            log_files.append(log)
            procs[spec.name] = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "services.cli.main", "serve", spec.name],
                env={**env, f"QUANZU_{spec.name.upper()}_PORT": str(spec.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        print("• starting intake, dispatch, feedback and the development SMS gateway")
        _wait_ready(specs, procs, timeout=90)
        settings = CommonSettings(
            _env_file=None,
            database_url=database_url,
            kafka_bootstrap_servers=bootstrap,
            subject_key_secret=values["QUANZU_SUBJECT_KEY_SECRET"],
        )
        demo = asyncio.run(admin.demo(settings)) if load_demo else None
        if demo is not None and not asyncio.run(admin.wait_until_intake_knows(settings, demo.area_codes, 30)):
            print("! intake has not learnt the demo areas yet: warnings may be marked unassigned for a moment")
        _print_summary(specs, demo, logs)
        if simulate_hours is not None:
            simulation = _start_simulation(simulate_hours, env, settings)
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}: see {logs / (name + '.log')}")
                    return 1
            time.sleep(0.5)
    except Stop:
        print("\nstopping…")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for proc in [*procs.values(), *([simulation] if simulation is not None else [])]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*procs.values(), *([simulation] if simulation is not None else [])]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.cleanup()
        for f in log_files:
            f.close()


def _start_simulation(hours: float, env: dict[str, str], settings: CommonSettings) -> subprocess.Popen[bytes]:
    """`quanzu simulate --attach` in the background: a simulated district next to the demo's, from this hour of the
    day, with a new seed each time (new subjects), so a newcomer sees numbers and dashboards move."""
    from datetime import datetime

    hour = datetime.now(settings.zone).hour
    seed = int(time.time()) % 1_000_000
    out = HOME / "simulation"
    print(f"• simulating {hours:g} hours of a district next to the demo's (report in {out}/)", flush=True)
    return subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "services.cli.main", "simulate", "--attach", "--hours", f"{hours:g}",
         "--start-hour", str(hour), "--seed", str(seed), "--out", str(out)],
        env=env,
    )  # fmt: skip


def _print_summary(specs: list[ServiceSpec], demo: admin.DemoSummary | None, logs: Path) -> None:
    print("\nQuanzu is running. Ctrl-C stops everything.\n")
    for spec in specs:
        print(f"  {spec.name:<9} {spec.url}   (API docs: {spec.url}/docs, metrics: {spec.url}/metrics)")
    print(f"  logs      {logs}/")
    if demo is not None:
        print("\nDemo district loaded (areas 370202-011 … 370202-043, 市南区).")
        for name, key in demo.sources.items():
            print(f"  source {name:<11} API key: {key}")
        for name, key in admin.DEMO_FEEDS.items():
            print(f"  crime-report feed {name}: API key {key}")
        print(f"  logins (password {admin.DEMO_PASSWORD}): admin, supervisor1…, operator1…, and per police area")
        print("          officer011, auxiliary011, gridworker011 (370202-011) and so on; `quanzu demo` lists all")
    print('\nTry:  see README.md, "Post a warning".\n', flush=True)
