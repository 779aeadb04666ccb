"""The `quanzu` command, run as an operator runs it: a subprocess reading its configuration from the environment."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shared.devinfra import Broker
from tests.conftest import SUBJECT_SECRET, AppClient
from tests.factories import warning_record


async def quanzu(
    database_url: str, broker: Broker, *args: str, extra_env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANZU_")}
    env.update(
        QUANZU_DATABASE_URL=database_url,
        QUANZU_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        QUANZU_SUBJECT_KEY_SECRET=SUBJECT_SECRET,
        QUANZU_HOME=str(Path(".quanzu") / "cli-test"),
    )
    env.update(extra_env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_source_add_prints_a_working_key_once_and_revoke_ends_it(
    database_url: str, broker: Broker, intake: AppClient
) -> None:
    code, out, _ = await quanzu(database_url, broker, "source", "add", "cli-telecom", "--rate-per-s", "50")
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith("qz_")
    accepted = await intake.post("/v1/warnings", json=warning_record(), headers={"X-API-Key": key})
    assert accepted.status_code == 202

    code, _, err = await quanzu(database_url, broker, "source", "add", "cli-telecom")
    assert code == 1
    assert "already exists" in err

    assert (await quanzu(database_url, broker, "source", "revoke", "cli-telecom"))[0] == 0
    # A never-seen key of the revoked source cannot be cached anywhere: a fresh source proves the path.
    code, _, err = await quanzu(database_url, broker, "source", "revoke", "no-such-source")
    assert code == 1
    assert "no source named" in err


async def test_source_add_refuses_bad_arguments(database_url: str, broker: Broker) -> None:
    code, _, err = await quanzu(database_url, broker, "source", "add", "Bad Name!")
    assert code == 1
    assert "name" in err
    code, _, err = await quanzu(database_url, broker, "source", "add", "ok-name", "--rate-per-s", "-3")
    assert code == 1
    assert "rate_per_s" in err
    code, _, err = await quanzu(database_url, broker, "source", "add", "ok-name", "--rate-per-s", "lots")
    assert code == 2
    assert "invalid float value" in err


async def test_areas_import_is_all_or_nothing_and_idempotent(database_url: str, broker: Broker, tmp_path: Path) -> None:
    good = tmp_path / "areas.csv"
    good.write_text(
        "\ufeffarea_code,area_name,station,street,district\n"
        "990001-001,测试一区,测试派出所,测试街道,测试区\n"
        "990001-002,测试二区,测试派出所,测试街道,测试区\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "area_code,area_name,station,street,district\n990002-001,甲,站,街,区\nnot a code!,乙,站,街,区\n",
        encoding="utf-8",
    )
    code, _, err = await quanzu(database_url, broker, "areas", "import", str(bad))
    assert code == 1
    assert "line 3: area_code" in err
    assert "nothing imported" in err

    assert (await quanzu(database_url, broker, "areas", "import", str(good)))[1].strip() == (
        "areas: 2 created, 0 updated, 0 unchanged"
    )
    assert (await quanzu(database_url, broker, "areas", "import", str(good)))[1].strip() == (
        "areas: 0 created, 0 updated, 2 unchanged"
    )
    # the bad file's valid first row was not imported either
    good.write_text(good.read_text(encoding="utf-8") + "990002-001,甲,站,街,区\n", encoding="utf-8")
    assert "1 created" in (await quanzu(database_url, broker, "areas", "import", str(good)))[1]


async def test_unreadable_file_and_bad_time_are_clear_errors(database_url: str, broker: Broker) -> None:
    code, _, err = await quanzu(database_url, broker, "areas", "import", "/nonexistent/areas.csv")
    assert code == 1
    assert "cannot read" in err
    code, _, err = await quanzu(database_url, broker, "outbox", "replay", "--since", "yesterday")
    assert code == 2
    assert "ISO 8601" in err


async def test_demo_is_idempotent_and_prints_the_same_keys(database_url: str, broker: Broker) -> None:
    first = await quanzu(database_url, broker, "demo")
    second = await quanzu(database_url, broker, "demo")
    assert first[0] == second[0] == 0
    assert "qz_demo_bank_key" in first[1]
    assert "0 created, 0 updated, 12 unchanged" in second[1]


async def test_demo_refuses_production(database_url: str, broker: Broker) -> None:
    code, _, err = await quanzu(database_url, broker, "demo", extra_env={"QUANZU_ENVIRONMENT": "production"})
    assert code == 1
    assert "refuses to run in production" in err


async def test_production_refuses_the_development_secret(database_url: str, broker: Broker) -> None:
    code, _, err = await quanzu(
        database_url,
        broker,
        "migrate",
        extra_env={
            "QUANZU_ENVIRONMENT": "production",
            "QUANZU_SUBJECT_KEY_SECRET": "development-only-subject-key-secret",
        },
    )
    assert code == 2
    assert "QUANZU_SUBJECT_KEY_SECRET must be set in production" in err
