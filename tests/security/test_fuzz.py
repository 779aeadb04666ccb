"""Schemathesis fuzzing of every operation of every service: no generated request gets a 5xx, with or
without credentials, and no answer to an officer of another area carries a warning's personal data. The three
services are fuzzed anonymously, as an admin and as an officer of another area (intake also as a source), and the
development SMS gateway anonymously (it has no credentials); each anonymous run must reach every operation.

Why the requests are not sent with `case.call()`
------------------------------------------------
The apps run in this process on pytest-asyncio's session event loop: their lifespans (the asyncpg pool,
the Kafka producer, the consumers) are entered by the session fixtures `intake`, `dispatch` and
`feedback`, and everything they hold is bound to that loop. Schemathesis' ASGI transport
(`schemathesis.openapi.from_asgi` + `case.call()`) drives an app through its own event loop in a portal
thread and enters the app's lifespan a second time there, which would replace `app.state` under the
running session and touch asyncpg connections from a foreign loop. `@schema.parametrize()` in turn
makes synchronous Hypothesis tests, which cannot await the async clients.

So: the schema is loaded from the running app (`schemathesis.openapi.from_dict(app.openapi())`), and
each operation's Hypothesis strategy (`operation.as_strategy(mode, headers=...)`) drives a plain
`@hypothesis.given` function run in a worker thread (`asyncio.to_thread`). That function serialises the
case as schemathesis would (`case.as_transport_kwargs()`, prepared by `requests`), sends the exact
bytes through an `httpx.ASGITransport` bound to the *same* app objects, scheduled on the session loop
(`asyncio.run_coroutine_threadsafe`), and validates with schemathesis' own `not_a_server_error`
check (`case.validate_response`). Hypothesis keeps its shrinking and reporting; a failure shows the
minimal case and a curl command.

Each fuzzing request comes from its own client address (see _FreshAddressTransport), so the random logins
POST /v1/auth/token is fuzzed with neither trip the login throttle (which would turn the endpoint into a
wall of 429s) nor lock the address the rest of the suite logs in from. Destructive operations with a name
in the path (deactivate a member, revoke a source or its key, set an area's policy) are pinned to
throwaway targets, so a generated name cannot hit a real member, source or policy.

Bounded for CI: a fixed number of examples per operation and generation mode, derandomized, no deadline,
no example database.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from services.cli import admin
from services.smsgw.main import ControlIn
from services.smsgw.main import create_app as create_smsgw
from shared.settings import CommonSettings
from tests.conftest import AppClient, Member, SourceCredentials, new_member, new_source
from tests.factories import warning_record

MAX_EXAMPLES = 40  # per operation, generation mode and set of credentials
HOME_AREA = "370202-011"
OTHER_AREA = "370202-021"
# The only area whose policy the fuzzer may set (the district default and the demo areas' are other tests').
SCRATCH_AREA = "370202-992"
SCRATCH_AREAS_CSV = (
    f"area_code,area_name,station,street,district\n{SCRATCH_AREA},模糊测试警务区,模糊测试派出所,模糊测试街道,市南区\n"
).encode()
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
SERVICES = ("intake", "dispatch", "feedback")
SUCCESS = frozenset(range(200, 300))
#: Operations anyone may call (see the authorization matrix); every other one must refuse an anonymous caller.
PUBLIC_OPERATIONS = frozenset({"GET /healthz", "GET /readyz", "POST /v1/auth/token", "POST /v1/auth/revoke"})
SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    print_blob=False,
)

ResponseCheck = Callable[[Any, httpx.Response], None]


@dataclass
class Run:
    """What a fuzz run saw, per operation."""

    statuses: dict[str, set[int]] = field(default_factory=dict)

    def saw(self, operation: str, status_code: int) -> None:
        self.statuses.setdefault(operation, set()).add(status_code)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(document: dict[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False  # every schema here is self-contained
    node: Any = document
    for escaped in ref[2:].split("/"):
        part = escaped.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _operations(app: FastAPI) -> Iterator[Any]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"schemathesis cannot read an operation: {result}"
        yield result.ok()


class _FreshAddressTransport(httpx.ASGITransport):
    """Every request from its own client address, in 198.18.0.0/15 (RFC 2544, never routed).

    The login throttle locks an address after 30 failed logins in 15 minutes; the fuzzer's random logins
    would lock theirs within a run, leave every later POST /v1/auth/token a 429 (the username, password and
    refresh token never parsed), and, from the shared test address, lock the rest of the suite out.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.client = (str(ipaddress.IPv4Address("198.18.0.0") + next(_ADDRESSES) % 2**17), 40_000)
        return await super().handle_async_request(request)


_ADDRESSES = itertools.count()


def _fuzz_client(client: AppClient) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=_FreshAddressTransport(app=client.app), base_url=client.base_url)


def _wire_request(case: Any, base_url: str) -> requests.PreparedRequest:
    """The request exactly as schemathesis' own transport would put it on the wire."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    allowed = ("method", "url", "headers", "files", "data", "params", "auth", "cookies", "json")
    request = requests.Request(**{k: v for k, v in kwargs.items() if k in allowed})
    return request.prepare()


async def fuzz(
    client: AppClient,
    *,
    headers: dict[str, str],
    pinned: dict[str, str] | None = None,
    check: ResponseCheck | None = None,
) -> Run:
    """Every operation of the client's app, positive and negative cases, with `headers` on every request.

    `pinned` fixes path parameters by name (for every operation that has them).
    """
    loop = asyncio.get_running_loop()
    run = Run()
    async with _fuzz_client(client) as http:
        base_url = str(http.base_url).rstrip("/")

        async def send(prepared: requests.PreparedRequest) -> httpx.Response:
            body = prepared.body
            content = body.encode() if isinstance(body, str) else body
            assert content is None or isinstance(content, bytes), f"a streamed body: {type(content)}"
            wire_headers = [
                (k.encode("latin-1"), v.encode("latin-1") if isinstance(v, str) else v)
                for k, v in prepared.headers.items()
                if k.lower() != "content-length"
            ]
            return await http.request(str(prepared.method), str(prepared.url), headers=wire_headers, content=content)

        def fuzz_operation(operation: Any, mode: schemathesis.GenerationMode) -> None:
            names = {p.name for p in operation.path_parameters}
            path_parameters = {k: v for k, v in (pinned or {}).items() if k in names} or None
            strategy = operation.as_strategy(mode, headers=headers or None, path_parameters=path_parameters)

            @SETTINGS
            @hypothesis.given(case=strategy)
            def one(case: Any) -> None:
                prepared = _wire_request(case, base_url)
                response = asyncio.run_coroutine_threadsafe(send(prepared), loop).result(timeout=60)
                run.saw(operation.label, response.status_code)
                if not (operation.path == "/readyz" and response.status_code == 503):  # readiness, by design
                    case.validate_response(response, checks=[not_a_server_error])
                if check is not None:
                    check(case, response)

            try:
                one()
            except hypothesis.errors.Unsatisfiable:
                # Nothing of the operation can be made invalid (no parameters, or only free-form strings).
                if mode is not schemathesis.GenerationMode.NEGATIVE:
                    raise

        def fuzz_all() -> None:
            for operation in _operations(client.app):
                for mode in MODES:
                    fuzz_operation(operation, mode)

        await asyncio.to_thread(fuzz_all)
    return run


# --- the callers ------------------------------------------------------------------------------------------


@dataclass
class Callers:
    admin: Member
    source: SourceCredentials
    other_officer: Member
    warning_id: str
    phone: str
    id_number: str
    pinned: dict[str, str]

    @property
    def pinned_to_the_warning(self) -> dict[str, str]:
        """Also every `warning_id`: the reads go past the lookup (masking, the access log) instead of a 404."""
        return {**self.pinned, "warning_id": self.warning_id}


@pytest.fixture(scope="module")
async def callers(
    common_settings: CommonSettings, intake: AppClient, dispatch: AppClient, demo_teams: dict[str, str]
) -> Callers:
    source = await new_source(common_settings)
    record = warning_record(area_code=HOME_AREA)
    posted = await intake.post("/v1/warnings", json=record, headers=source.headers)
    assert posted.status_code == 202, posted.text
    assert posted.json()["assigned"] is True
    # Throwaway targets for the destructive operations: whatever the fuzzer sends, only these can be hit.
    await admin.areas_import(common_settings, SCRATCH_AREAS_CSV)
    target = await new_source(common_settings)
    username = f"fuzz-target-{uuid.uuid4().hex[:8]}"
    await admin.member_add(
        common_settings, username=username, name="靶子", role="officer", team=demo_teams[OTHER_AREA],
        password=f"pw-{uuid.uuid4().hex}",
    )  # fmt: skip
    return Callers(
        admin=await new_member(common_settings, dispatch, "admin"),
        source=source,
        other_officer=await new_member(common_settings, dispatch, "officer", team=demo_teams[OTHER_AREA]),
        warning_id=posted.json()["id"],
        phone=record["subject"]["phone"],
        id_number=record["subject"]["id_number"],
        pinned={"name": target.name, "username": username, "area_code": SCRATCH_AREA},
    )


# --- the tests ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clients(intake: AppClient, dispatch: AppClient, feedback: AppClient) -> dict[str, AppClient]:
    return {"intake": intake, "dispatch": dispatch, "feedback": feedback}


@pytest.mark.parametrize("service", SERVICES)
async def test_no_generated_request_gets_a_server_error_anonymously(
    service: str, clients: dict[str, AppClient], callers: Callers
) -> None:
    """Without credentials (the generator still sends random Authorization and X-API-Key headers)."""
    run = await fuzz(clients[service], headers={}, pinned=callers.pinned)
    allowed = {op for op, codes in run.statuses.items() if codes & SUCCESS and op not in PUBLIC_OPERATIONS}
    assert not allowed, f"anonymous requests succeeded on protected operations: {sorted(allowed)}"
    assert set(run.statuses) == {op.label for op in _operations(clients[service].app)}, "an operation went unfuzzed"


async def test_no_generated_request_gets_a_server_error_from_the_sms_gateway() -> None:
    """A gateway of its own: what the fuzzer sends to POST /v1/control (failure rates, 5xx statuses, delays) must
    reach neither the session's gateway nor the fuzzer's next request, so each control request is undone."""
    app = create_smsgw()

    def undo_faults(case: Any, response: httpx.Response) -> None:
        if case.operation.label == "POST /v1/control":
            app.state.gateway.control = ControlIn()

    async with AppClient(app, "smsgw") as client:
        run = await fuzz(client, headers={}, check=undo_faults)
    assert set(run.statuses) == {op.label for op in _operations(app)}, "an operation went unfuzzed"
    assert run.statuses["POST /v1/messages"] & SUCCESS, run.statuses


@pytest.mark.parametrize("service", SERVICES)
async def test_no_generated_request_gets_a_server_error_as_an_admin(
    service: str, clients: dict[str, AppClient], callers: Callers
) -> None:
    admin_token = {"authorization": f"Bearer {callers.admin.tokens['access_token']}"}
    run = await fuzz(clients[service], headers=admin_token, pinned=callers.pinned_to_the_warning)
    # The credentials were applied: the access log answers an admin.
    assert run.statuses["GET /v1/admin/access-log"] & SUCCESS, run.statuses


async def test_no_generated_request_gets_a_server_error_as_a_source(
    clients: dict[str, AppClient], callers: Callers
) -> None:
    source_key = {"authorization": f"Bearer {callers.source.key}"}
    run = await fuzz(clients["intake"], headers=source_key, pinned=callers.pinned_to_the_warning)
    # The key was applied: the warnings were judged on their content (the schema cannot express every rule of a
    # valid record, so most generated ones are 422), never refused for want of a key.
    assert run.statuses["POST /v1/warnings"] - {401, 403}, run.statuses
    assert run.statuses["POST /v1/warnings/batch"] & SUCCESS, run.statuses


@pytest.mark.parametrize("service", SERVICES)
async def test_an_officer_of_another_area_gets_no_trace_of_a_warning(
    service: str, clients: dict[str, AppClient], callers: Callers
) -> None:
    """Fuzzed as the officer of 370202-021, with every `warning_id` pinned to a warning of 370202-011: no
    answer may carry its subject's phone or ID number, nor show the warning at all."""
    secrets = (callers.phone, callers.id_number)

    def no_leak(case: Any, response: httpx.Response) -> None:
        body = response.text
        leaked = [s for s in secrets if s in body]
        assert not leaked, f"{case.operation.label} answered {response.status_code} with {leaked}: {body[:500]}"
        if response.is_success:
            assert callers.warning_id not in body, f"{case.operation.label} showed the warning: {body[:500]}"

    officer_token = {"authorization": f"Bearer {callers.other_officer.tokens['access_token']}"}
    await fuzz(clients[service], headers=officer_token, pinned=callers.pinned_to_the_warning, check=no_leak)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_reference_in_the_openapi_resolves(
    service: str, clients: dict[str, AppClient], request: pytest.FixtureRequest
) -> None:
    document = clients[service].app.openapi()
    dangling = sorted({ref for ref in _refs(document) if not _resolves(document, ref)})
    assert not dangling, f"{service}: $refs that point nowhere in the document: {dangling}"
