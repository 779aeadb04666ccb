"""The newcomer's path: `quanzu run` (what `make run` runs) starts everything, and the README's example works."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from shared.devinfra import free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_warning_example() -> tuple[str, dict[str, str], dict[str, object]]:
    """The path, headers and body of the README's curl example, as written there."""
    text = README.read_text()
    block = re.search(r"```sh\n(curl -s -X POST http://127\.0\.0\.1:8001/v1/warnings .*?)\n```", text, re.S)
    assert block, "the README lost its 'Post a warning' example"
    command = block.group(1)
    headers = dict(h.split(": ", 1) for h in re.findall(r"-H '([^']+)'", command))
    body = json.loads(re.search(r"-d '(.*)'", command, re.S).group(1))  # type: ignore[union-attr]
    return "/v1/warnings", headers, body


@pytest.mark.slow
async def test_quanzu_run_starts_the_system_and_the_readme_example_works(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("INTAKE", "DISPATCH", "FEEDBACK", "SMSGW", "BROKER")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANZU_")}
    env.update({f"QUANZU_{name}_PORT": str(port) for name, port in ports.items()})
    env["QUANZU_HOME"] = str(tmp_path / "home")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "run",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output: list[str] = []
    try:
        async with asyncio.timeout(120):
            assert proc.stdout is not None
            while not any("Quanzu is running" in line for line in output):
                line = (await proc.stdout.readline()).decode()
                assert line, "quanzu run exited early:\n" + "".join(output)
                output.append(line)
            while not any("API key" in line for line in output):
                output.append((await proc.stdout.readline()).decode())
        path, headers, body = readme_warning_example()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['INTAKE']}") as client:

            async def post(record: dict[str, object]) -> httpx.Response:
                return await client.post(path, json=record, headers=headers)

            first = await post(body)
            assert first.status_code == 202, first.text
            assert first.json() == {
                "id": first.json()["id"],
                "status": "accepted",
                "duplicate": False,
                "assigned": True,
            }
            again = await post(body)
            assert again.json() == {**first.json(), "duplicate": True}
            read = await client.get(f"{path}/{first.json()['id']}", headers=headers)
            assert read.status_code == 200
            assert read.json()["subject"]["phone"] == "138****8000"
            for name in ("DISPATCH", "FEEDBACK"):
                assert (await client.get(f"http://127.0.0.1:{ports[name]}/readyz")).status_code == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                rest = await proc.communicate()
                output.append(rest[0].decode() if rest[0] else "")
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, "".join(output)
    assert (tmp_path / "home" / "env").exists()


def test_readme_documents_every_setting() -> None:
    from services.cli.main import SETTINGS

    text = README.read_text()
    documented = set(re.findall(r"`(QUANZU_[A-Z_]+)`", text))
    for cls in SETTINGS.values():
        for field in cls.model_fields:
            assert f"QUANZU_{field.upper()}" in documented, f"QUANZU_{field.upper()} is not in the README's table"
