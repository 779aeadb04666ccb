"""docker-compose.yml, checked without a Docker engine: Debian's docker-compose validates and normalises it, and the
normalised model is held against what the README documents (services, ports, environment), against the code
(topics and their partitions, settings in production mode) and against deploy/make-secrets.sh."""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.events import TOPIC_PARTITIONS
from tests.deploy.artifacts import (
    COMPOSE_FILE,
    PROMETHEUS_CONFIG,
    REPO,
    load_yaml,
    markdown_table,
    readme_section,
)
from tests.deploy.conftest import make_secrets

QUANZU_IMAGE = "quanzu:latest"
SERVICES = ("intake", "dispatch", "feedback", "smsgw")  # what `quanzu serve` runs


@pytest.fixture(scope="module")
def compose(docker_compose: str) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, variables interpolated)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    done = subprocess.run(
        [docker_compose, "--file", str(COMPOSE_FILE), "--project-directory", str(REPO), "config"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"docker-compose config:\n{done.stderr}"
    model: dict[str, Any] = yaml.safe_load(done.stdout)
    return model


def _quanzu_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s["image"] == QUANZU_IMAGE}


def _served(service: dict[str, Any]) -> str | None:
    """The service a `quanzu serve X` container runs, if it runs one."""
    command = service.get("command") or []
    return command[1] if command[:1] == ["serve"] else None


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def _secrets(service: dict[str, Any]) -> set[str]:
    return {s["source"] if isinstance(s, dict) else s for s in service.get("secrets") or []}


def _host_ports(service: dict[str, Any]) -> list[str]:
    """Published ports as `[host_ip:]published`, from either of the syntaxes docker-compose may print."""
    found = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ip = port.get("host_ip")
            found.append(f"{ip}:{port['published']}" if ip else str(port["published"]))
        else:
            found.append(str(port).rsplit(":", 1)[0])  # [host_ip:]published:target[/protocol]
    return found


def _container_ports(service: dict[str, Any]) -> list[int]:
    ports = service.get("ports") or []
    return [int(p["target"]) if isinstance(p, dict) else int(str(p).rsplit(":", 1)[1].split("/")[0]) for p in ports]


def _documented_settings() -> set[str]:
    return set(re.findall(r"`(QUANZU_[A-Z_]+)`", readme_section("Configuration")))


def _readme_defaults() -> dict[str, tuple[str, str]]:
    """service -> (default host, default port) from the README's configuration table."""
    defaults = {}
    for row in markdown_table(readme_section("Configuration"), "variable"):
        match = re.fullmatch(r"`QUANZU_(\w+)_HOST` / `QUANZU_\1_PORT`", row["variable"])
        if match:
            host, port = re.fullmatch(r"`(.+)` / `(\d+)`", row["default"]).groups()  # type: ignore[union-attr]
            defaults[match.group(1).lower()] = (host, port)
    return defaults


def test_docker_compose_validates_the_file(docker_compose: str) -> None:
    done = subprocess.run(
        [docker_compose, "--file", str(COMPOSE_FILE), "--project-directory", str(REPO), "config", "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_services_images_and_host_ports_are_the_readmes(compose: dict[str, Any]) -> None:
    rows = markdown_table(readme_section("Production"), "service")
    documented = {
        row["service"].strip("`"): (row["image"].strip("`"), row["host port"].strip("`").replace("—", ""))
        for row in rows
    }
    actual = {
        name: (s["image"].removesuffix(":latest"), ",".join(_host_ports(s))) for name, s in compose["services"].items()
    }
    assert actual == documented


def test_the_system_the_issue_asks_for_is_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    served = sorted(filter(None, (_served(s) for s in _quanzu_services(compose).values())))
    assert served == ["dispatch", "dispatch", "feedback", "intake", "smsgw"]  # two dispatch replicas
    assert services["migrate"]["command"] == ["migrate"]
    assert services["postgres"]["image"].startswith("postgres:16.")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_the_two_dispatch_replicas_differ_only_in_the_published_port(compose: dict[str, Any]) -> None:
    one, two = (dict(compose["services"][name]) for name in ("dispatch", "dispatch-2"))
    assert one.pop("ports") and "ports" not in two
    assert one == two


def test_third_party_images_are_pinned_and_ours_built_from_deploy_dockerfile(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if image == QUANZU_IMAGE:
            assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
            assert Path(service["build"]["context"]).resolve() == REPO, name
        else:
            assert "build" not in service, name
            assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+(-[\w.]+)?", image), f"{name}: {image} is not pinned"


def test_configuration_is_by_documented_environment_variables(compose: dict[str, Any]) -> None:
    documented = _documented_settings()
    for name, service in _quanzu_services(compose).items():
        env = _env(service)
        assert set(env) <= documented, f"{name}: undocumented {set(env) - documented}"
        for secret in _secrets(service):
            assert secret.upper() in documented, f"{name}: secret {secret} names no documented setting"
        if name != "smsgw":
            assert env["QUANZU_ENVIRONMENT"] == "production", name
            assert env["QUANZU_SECRETS_DIR"] == "/run/secrets", name
            assert {"quanzu_database_url", "quanzu_subject_key_secret"} <= _secrets(service), name
        assert not {k for k in env if re.search(r"(SECRET|PASSWORD|PRIVATE_KEY|DATABASE_URL)$", k)}, (
            f"{name}: a secret in the environment"
        )
    assert _secrets(compose["services"]["dispatch"]) >= {"quanzu_token_private_key", "quanzu_token_public_key"}
    for name in ("intake", "feedback", "migrate", "quanzu"):
        assert "quanzu_token_private_key" not in _secrets(compose["services"][name]), name


def test_ports_agree_with_the_readme_health_checks_and_prometheus(compose: dict[str, Any]) -> None:
    defaults = _readme_defaults()
    targets = {
        t for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    for name, service in _quanzu_services(compose).items():
        served = _served(service)
        if served is None:
            continue
        env = _env(service)
        port = env[f"QUANZU_{served.upper()}_PORT"]
        assert port == defaults[served][1], f"{name}: not the README's default port"
        assert env[f"QUANZU_{served.upper()}_HOST"] == "0.0.0.0", name
        assert _container_ports(service) in ([], [int(port)]), name
        check = service["healthcheck"]["test"]
        assert check[-1] == f"http://127.0.0.1:{port}/{'healthz' if served == 'smsgw' else 'readyz'}", name
        assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}"
    assert _env(compose["services"]["dispatch"])["QUANZU_SMS_PROVIDER_URL"] == "http://smsgw:8025"


def test_start_order_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    one_shots = {"kafka-init", "migrate", "quanzu"}
    for name, service in services.items():
        if name in one_shots:
            assert service["restart"] == "no", name
            continue
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], f"{name} has no health check"
        for dependency, condition in (service.get("depends_on") or {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits on {dependency}'s health"
    for name, service in _quanzu_services(compose).items():
        if _served(service) in ("intake", "dispatch", "feedback"):
            assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
            assert service["depends_on"]["kafka-init"] == {"condition": "service_completed_successfully"}, name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["kafka-init"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["dispatch"]["depends_on"]["smsgw"] == {"condition": "service_healthy"}
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert services["quanzu"]["profiles"] == ["admin"]  # run on demand only


def test_postgres_and_kafka_keep_their_data_in_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def volume_at(service: str, path: str) -> bool:
        for volume in services[service]["volumes"]:
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
            if target == path and source in compose["volumes"]:
                return True
        return False

    assert volume_at("postgres", "/var/lib/postgresql/data")
    kafka = _env(services["kafka"])
    assert volume_at("kafka", kafka["KAFKA_LOG_DIRS"])
    assert volume_at("prometheus", "/prometheus")
    assert volume_at("grafana", "/var/lib/grafana")


def test_kafka_runs_in_kraft_mode_and_topics_come_only_from_the_init_step(compose: dict[str, Any]) -> None:
    kafka = _env(compose["services"]["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in k for k in kafka)
    assert kafka["CLUSTER_ID"] and kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    for name, service in _quanzu_services(compose).items():
        if "QUANZU_KAFKA_BOOTSTRAP_SERVERS" in _env(service):
            assert _env(service)["QUANZU_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name


def test_the_init_step_creates_every_topic_with_its_partitions_and_replication(tmp_path: Path) -> None:
    """Runs kafka-init's script with a stand-in for kafka-topics.sh that records what it is asked to create."""
    raw = load_yaml(COMPOSE_FILE)["services"]["kafka-init"]
    assert raw["entrypoint"] == ["/bin/bash", "-c"]
    script = raw["command"][0].replace("$$", "$")  # compose's escape for a literal $
    calls = tmp_path / "calls.jsonl"
    fake = tmp_path / "kafka-topics.sh"
    fake.write_text(
        f'#!{sys.executable}\nimport json, sys\nopen("{calls}", "a").write(json.dumps(sys.argv[1:]) + "\\n")\n'
        'print("Topic: x\\tPartitionCount: 1")\n'
    )
    fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], **{k: str(v) for k, v in raw["environment"].items()}}
    script = script.replace("/opt/kafka/bin/kafka-topics.sh", str(fake))
    done = subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    created: dict[str, dict[str, Any]] = {}
    for line in calls.read_text().splitlines():
        args = json.loads(line)
        assert args[:2] == ["--bootstrap-server", "kafka:9092"]
        if "--create" not in args:
            continue
        options: dict[str, Any] = {"config": []}
        for key, value in itertools.pairwise(args):
            if key == "--config":
                options["config"].append(value)
            elif key.startswith("--"):
                options[key] = value
        assert "--if-not-exists" in args  # the step can run again on every `up`
        created[options["--topic"]] = options
    assert {topic: int(o["--partitions"]) for topic, o in created.items()} == dict(TOPIC_PARTITIONS)
    kafka = _env(load_yaml(COMPOSE_FILE)["services"]["kafka"])
    for topic, options in created.items():
        replication = int(options["--replication-factor"])
        assert replication == int(kafka["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 1, topic  # one broker here
        assert f"min.insync.replicas={kafka['KAFKA_MIN_INSYNC_REPLICAS']}" in options["config"], topic
    assert "cleanup.policy=compact" in created["registry.events"]["config"]  # every area's latest version, kept


def test_make_secrets_writes_every_secret_once_and_the_database_url_matches(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    directory = make_secrets(tmp_path / "secrets")
    files = {p.name: p.read_text() for p in directory.iterdir()}
    referenced = {Path(s["file"]).name for s in compose["secrets"].values()}
    assert set(files) == referenced == set(compose["secrets"])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o004, f"{path.name}: the containers' users cannot read it"
    url = urlsplit(files["quanzu_database_url"].strip())
    postgres = _env(compose["services"]["postgres"])
    assert (url.username, url.password, url.hostname, url.port, url.path) == (
        postgres["POSTGRES_USER"], files["postgres_password"].strip(), "postgres", 5432, "/" + postgres["POSTGRES_DB"]
    )  # fmt: skip
    make_secrets(directory)  # again: nothing changes
    assert {p.name: p.read_text() for p in directory.iterdir()} == files


_SETTINGS_PROBE = """
import json, sys
from cryptography.hazmat.primitives import serialization
from services.cli.main import SETTINGS
from shared.settings import CommonSettings
service = sys.argv[1]
settings = SETTINGS.get(service, CommonSettings)()
out = {k: str(v) for k, v in settings.model_dump().items() if k.endswith(("_host", "_port"))}
out["environment"] = getattr(settings, "environment", None)
out["database_url"] = getattr(settings, "database_url", None)
if service in ("intake", "dispatch", "feedback"):
    public = serialization.load_pem_public_key(settings.public_key_pem().encode())
if service == "dispatch":
    private = serialization.load_pem_private_key(settings.private_key_pem().encode(), password=None)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    out["key_pair"] = private.public_key().public_bytes(*raw) == public.public_bytes(*raw)
print(json.dumps(out))
"""


def test_each_process_accepts_its_compose_configuration_in_production(compose: dict[str, Any], tmp_path: Path) -> None:
    """Each Quanzu container's environment and mounted secrets, given to the settings it loads at start."""
    secrets = make_secrets(tmp_path / "all-secrets")
    probes: dict[str, tuple[str, subprocess.Popen[str]]] = {}
    for name, service in _quanzu_services(compose).items():
        mounted = tmp_path / name
        mounted.mkdir()
        for secret in _secrets(service):
            (mounted / secret).write_text((secrets / secret).read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUANZU_")}
        env |= _env(service) | {"QUANZU_HOME": str(tmp_path / "home")}
        if "QUANZU_SECRETS_DIR" in env:
            env["QUANZU_SECRETS_DIR"] = str(mounted)
        served = _served(service) or "cli"
        probes[name] = served, subprocess.Popen(
            [sys.executable, "-c", _SETTINGS_PROBE, served], env=env, cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    for name, (served, probe) in probes.items():
        out, err = probe.communicate(timeout=60)
        assert probe.returncode == 0, f"{name}: {err}"
        settings = json.loads(out)
        if served == "smsgw":
            assert settings["smsgw_host"] == "0.0.0.0"
            continue
        assert settings["environment"] == "production", name
        assert settings["database_url"] == (secrets / "quanzu_database_url").read_text().strip(), name
        if served != "cli":
            assert settings[f"{served}_host"] == "0.0.0.0", name
        if served == "dispatch":
            assert settings["key_pair"] is True


def test_the_readme_explains_production() -> None:
    section = readme_section("Production")
    for needed in (
        "docker compose up",
        "deploy/make-secrets.sh",
        "http://127.0.0.1:3000",
        "deploy/KUBERNETES.md",
        "Quanzu · SLA board",
        "Quanzu · Outcomes",
        "Quanzu · Pipeline health",
        "tests/deploy",
    ):
        assert needed in section, needed
