"""The deployment checks' fixtures: the real tools from Debian's packages (installed when absent, as root), and an
isolated Quanzu deployment: its own database and broker, every service a real process on a free port, run as
docker-compose.yml runs them (`quanzu migrate`, then `quanzu serve ...` in production mode with the secrets of
deploy/make-secrets.sh), with a real Prometheus scraping it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import yaml

from services.cli import admin
from shared.devinfra import Broker, drop_database, ensure_database, free_port, wait_for
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.deploy.artifacts import MAKE_SECRETS, PROMETHEUS_CONFIG, QUANZU_JOBS, RULE_FILES, load_yaml


def ensure_debian_package(package: str, *binaries: str) -> dict[str, str]:
    """The paths of `binaries`, installing Debian's `package` first if one is missing."""
    if any(shutil.which(b) is None for b in binaries):
        apt = shutil.which("apt-get")
        if apt is None or os.geteuid() != 0:
            pytest.fail(
                f"{', '.join(binaries)} missing: install Debian's `{package}` package (apt-get install {package})"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "--no-install-recommends", package]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            # The package lists may be missing or stale on a fresh machine.
            update = [apt, "-o", "DPkg::Lock::Timeout=300", "update", "-q"]
            subprocess.run(update, env=env, capture_output=True, check=False)
            done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"apt-get install {package} failed:\n{done.stdout}\n{done.stderr}"
    paths = {b: shutil.which(b) for b in binaries}
    missing = [b for b, p in paths.items() if p is None]
    assert not missing, f"Debian's {package} did not install {missing}"
    return {b: str(p) for b, p in paths.items()}


@pytest.fixture(scope="session")
def prometheus_tools() -> dict[str, str]:
    """promtool and prometheus, from Debian's `prometheus` package."""
    return ensure_debian_package("prometheus", "promtool", "prometheus")


@pytest.fixture(scope="session")
def promtool(prometheus_tools: dict[str, str]) -> str:
    return prometheus_tools["promtool"]


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """Debian's `docker-compose` (Compose v1): it validates and normalises a compose file without an engine."""
    return ensure_debian_package("docker-compose", "docker-compose")["docker-compose"]


def make_secrets(directory: Path) -> Path:
    subprocess.run(["/bin/sh", str(MAKE_SECRETS), str(directory)], check=True, capture_output=True)
    return directory


PASSWORD = "deploy-test-password"
#: Police area -> its station, for the areas the deployment's members work in (services/cli/demo_areas.csv).
STATIONS = {"370202-012": "八大关派出所", "370202-013": "八大关派出所", "370202-021": "中山路派出所"}


@dataclass
class Deployment:
    """A running Quanzu: base URLs per Prometheus job (dispatch has two replicas)."""

    urls: dict[str, list[str]]
    settings: CommonSettings  # what the `quanzu` command uses to reach it
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    source_key: str = ""  # an upstream system's API key
    operators: dict[str, str] = field(default_factory=dict)  # station -> an operator's username (password PASSWORD)

    def url(self, job: str) -> str:
        return self.urls[job][0]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
            for p in sorted(self.logs.glob("*.log"))
        )


async def provision(deployment: Deployment) -> None:
    """What the README's production steps do with `quanzu`: the district's areas, an upstream source, a team per
    area, an admin, an operator per station and an officer of 370202-012 (not `quanzu demo`: production refuses)."""
    settings = deployment.settings
    await admin.areas_import(settings, admin.DEMO_AREAS.read_bytes())
    deployment.source_key = await admin.source_add(settings, "bank", 1000)
    for area in STATIONS:
        await admin.team_add(settings, f"team-{area}", area, backup=False)
    members: list[dict[str, Any]] = [
        {"username": "chief", "role": "admin", "district": True},
        {"username": "officer012", "role": "officer", "team": "team-370202-012"},
    ]
    for n, station in enumerate(sorted(set(STATIONS.values())), 1):
        members.append({"username": f"operator{n}", "role": "operator", "station": station})
        deployment.operators[station] = f"operator{n}"
    for member in members:
        await admin.member_add(settings, name="测试", password=PASSWORD, **member)
    known = await admin.wait_until_intake_knows(settings, set(STATIONS), timeout=30)
    assert known, "intake did not learn the areas from registry.events"


def _quanzu(args: list[str], env: dict[str, str], cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
    )


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="module")
async def deployment(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    root = tmp_path_factory.mktemp("deployment")
    logs, home = root / "logs", root / "home"
    logs.mkdir()
    home.mkdir()
    secrets = make_secrets(root / "secrets")
    database = f"quanzu_deploy_{os.getpid()}"
    await drop_database(pg_admin_url, database)
    database_url = await ensure_database(pg_admin_url, database)
    log_files: list[IO[bytes]] = []

    def log(name: str) -> IO[bytes]:
        log_files.append((logs / f"{name}.log").open("wb"))
        return log_files[-1]

    broker = Broker(free_port(), log=log("broker"))
    ports = {"intake": [free_port()], "dispatch": [free_port(), free_port()], "feedback": [free_port()]}
    ports["smsgw"] = [free_port()]
    deployment = Deployment(
        urls={job: [f"http://127.0.0.1:{p}" for p in job_ports] for job, job_ports in ports.items()},
        settings=CommonSettings(
            _env_file=None,
            database_url=database_url,
            kafka_bootstrap_servers=broker.bootstrap,
        ),
        logs=logs,
    )
    # As docker-compose.yml: production, the secrets as files, the database URL and broker from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANZU_")}
    env.update(
        QUANZU_ENVIRONMENT="production",
        QUANZU_SECRETS_DIR=str(secrets),
        QUANZU_HOME=str(home),
        QUANZU_DATABASE_URL=database_url,
        QUANZU_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        QUANZU_SMS_PROVIDER_URL=deployment.url("smsgw"),
        QUANZU_AREA_REFRESH_S="0.5",
        QUANZU_LOG_LEVEL="WARNING",
    )
    try:
        broker.start()
        await ensure_topics(broker.bootstrap)  # kafka-init
        migrate = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "services.cli.main", "migrate"], env=env, cwd=home,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        for job, job_ports in ports.items():
            for n, port in enumerate(job_ports, 1):
                name = job if n == 1 else f"{job}-{n}"
                process_env = {
                    **env,
                    f"QUANZU_{job.upper()}_HOST": "127.0.0.1",
                    f"QUANZU_{job.upper()}_PORT": str(port),
                }
                deployment.processes[name] = _quanzu(["serve", job], process_env, home, log(name))
        for job, urls in deployment.urls.items():
            for url in urls:
                path = "/healthz" if job == "smsgw" else "/readyz"
                try:
                    await wait_for(lambda u=url + path: _ready(u), timeout=60, interval=0.1, message=f"{url}{path}")
                except TimeoutError:
                    pytest.fail(f"{url}{path} not ready:\n{deployment.log_tail()}")
        await provision(deployment)
        yield deployment
    finally:
        for process in deployment.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in deployment.processes.values():
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        broker.stop()
        for f in log_files:
            f.close()
        with contextlib.suppress(Exception):
            await drop_database(pg_admin_url, database)


def local_prometheus_config(deployment: Deployment, port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with its targets pointed at `deployment`, scraping every second."""
    config: dict[str, Any] = load_yaml(PROMETHEUS_CONFIG)
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in RULE_FILES]
    local = {job: [u.removeprefix("http://") for u in deployment.urls[job]] for job in QUANZU_JOBS}
    local["prometheus"] = [f"127.0.0.1:{port}"]
    for job in config["scrape_configs"]:
        assert job["job_name"] in local, f"the test does not know where job {job['job_name']} runs"
        job["static_configs"] = [{"targets": local[job["job_name"]]}]
    return config


@dataclass
class Prometheus:
    url: str

    async def query(self, expr: str) -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.url}/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            body = (await client.get(f"{self.url}{path}")).json()
        assert body["status"] == "success", body
        return body["data"]


def _start_prometheus(binary: str, config: Path, data: Path, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
async def prometheus(
    deployment: Deployment, prometheus_tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Prometheus]:
    """A real Prometheus (Debian's) scraping the deployment every second and evaluating deploy/'s rules."""
    root = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_prometheus_config(deployment, port)))
    with (deployment.logs / "prometheus.log").open("wb") as log:
        process = _start_prometheus(prometheus_tools["prometheus"], config, root / "data", port, log)
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_for(lambda: _ready(f"{url}/-/ready"), timeout=30, interval=0.1, message="Prometheus ready")
            yield Prometheus(url)
        finally:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
