"""deploy/Dockerfile and the locks it installs, checked without building: a pinned base, several stages, a
non-root user, the runtime lock only; and that lock is complete (every runtime requirement and, through the
installed packages' metadata, each of theirs), hashed, and pinned as the development lock pins them."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.deploy.artifacts import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
RUNTIME_LOCK = REPO / "requirements-runtime.lock"
DEV_LOCK = REPO / "requirements.lock"
BUILD_LOCK = DEPLOY / "build-requirements.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, arg in _instructions():
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, arg))
    return stages


def _pins(lock: Path) -> dict[str, str]:
    """name -> version of a `uv pip compile --generate-hashes` lock, checking that every pin has hashes."""
    text = lock.read_text()
    pins: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            assert "--hash=sha256:" in block, f"{lock.name}: {match.group(1)} has no hash"
            pins[str(canonicalize_name(match.group(1)))] = match.group(2)
    return pins


def test_the_base_image_is_pinned_and_shared_by_every_stage() -> None:
    instructions = _instructions()
    [base] = [arg for op, arg in instructions if op == "ARG" and arg.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert len(froms) >= 2, "a multi-stage build"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)


def test_the_final_stage_runs_quanzu_as_a_non_root_user_with_only_the_built_environment() -> None:
    final = _stages()[-1]
    [user] = [arg for op, arg in final if op == "USER"]
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user), "a numeric non-root user (runAsNonRoot can check it)"
    copies = [arg for op, arg in final if op == "COPY"]
    assert copies and all(c.startswith("--from=build ") for c in copies), "the final stage copies only built files"
    assert not [arg for op, arg in final if op == "RUN" and re.search(r"pip|apt-get|requirements", arg)]
    [entrypoint] = [arg for op, arg in final if op == "ENTRYPOINT"]
    assert entrypoint == '["quanzu"]'
    env = " ".join(arg for op, arg in final if op == "ENV")
    assert "QUANZU_ENVIRONMENT=production" in env
    assert "/opt/quanzu/bin" in env


def test_the_build_installs_the_runtime_lock_with_hashes_and_wheels_only() -> None:
    runs = [arg for op, arg in _stages()[0] if op == "RUN"]
    installs = [r for r in runs if "pip install" in r and "-r " in r]
    assert any("-r requirements-runtime.lock" in r for r in installs)
    assert all("--require-hashes" in r and "--only-binary=:all:" in r for r in installs)
    dev_lock = re.compile(r"(?<![\w/-])requirements\.lock")  # the development lock (test tools, embedded infra)
    assert not any(dev_lock.search(r) for r in runs)
    copied = " ".join(arg for op, arg in _stages()[0] if op == "COPY")
    assert "tests" not in copied and not dev_lock.search(copied)


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][0] == "*", "everything is excluded, then what is copied allowed back"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        part.rstrip("/")
        for op, arg in _stages()[0]
        if op == "COPY"
        for part in arg.split()[:-1]
        if not part.startswith("--")
    }
    assert copied <= allowed
    assert not {a for a in allowed if "secret" in a or a.startswith((".quanzu", ".venv", "deploy/secrets"))}


def test_the_runtime_lock_is_the_runtime_requirements_and_every_one_of_theirs() -> None:
    header = RUNTIME_LOCK.read_text().splitlines()[1]
    assert header.strip("# ") == (
        "uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements-runtime.lock"
    )
    runtime, dev = _pins(RUNTIME_LOCK), _pins(DEV_LOCK)
    assert {name: dev.get(name) for name in runtime} == runtime, "the two locks pin different versions"
    # The closure of [project].dependencies through the installed packages' metadata (Linux, Python 3.11).
    environment = {k: str(v) for k, v in default_environment().items()}
    environment |= {"python_version": "3.11", "python_full_version": "3.11.0"}
    environment |= {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
    needed: set[str] = set()
    pending = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        needed.add(name)
        for text in metadata.requires(name) or []:
            dependency = Requirement(text)
            if dependency.marker is None or any(
                dependency.marker.evaluate(environment | {"extra": extra}) for extra in ({""} | requirement.extras)
            ):
                pending.append(dependency)
    assert needed - set(runtime) == set(), "runtime requirements missing from requirements-runtime.lock"
    assert set(runtime) - needed == set(), "packages in requirements-runtime.lock that nothing at runtime needs"
    for dev_only in PYPROJECT["project"]["optional-dependencies"]["local"]:
        assert canonicalize_name(Requirement(dev_only).name) not in runtime


def test_the_build_tools_are_locked_and_satisfy_the_build_system() -> None:
    pins = _pins(BUILD_LOCK)
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        version = pins[canonicalize_name(requirement.name)]
        assert version in SpecifierSet(str(requirement.specifier)), text
    assert Path(DEPLOY / "build-requirements.in").exists()
