"""The development SMS gateway: a stand-in for a carrier's HTTP API, with fault injection for tests and demos.

- `POST /v1/messages` `{"to", "text"}` with a required `Idempotency-Key` header: 201 with the new message; the
  same key again answers 200 with the first message and records nothing; the same key with another body is a
  409. Before answering it waits `delay_s`, then fails with `fail_status` (and `Retry-After: retry_after_s` if
  set) with probability `fail_rate`, recording nothing, as set by `POST /v1/control`; `seed` makes the draws
  reproducible.
- `POST /v1/messages/batch` `{"messages": [{"idempotency_key", "to", "text"}, ...]}`, up to 100: as carriers' batch
  APIs do, one request for many messages. 200 with `results`, one per message in order, each the `code` and
  `body` that a single post of it would have got (201, 200, 409 or 422). A fault (delay, failure) is drawn once
  for the whole request, as a carrier's outage would hit it, and then nothing is recorded.
- `GET /v1/messages?to=&limit=`: what was sent, newest last. `DELETE /v1/messages`: forget it all.
- `GET /v1/control`: the fault settings and counters (`requests`, `failures`, `in_flight`).

State lives in memory: restarting the gateway forgets every message.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from services.smsgw.settings import SmsGatewaySettings
from shared import problems
from shared.health import operations_router
from shared.logs import configure_logging
from shared.problems import Problem

MAX_KEY_CHARS = 200


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    to: str = Field(min_length=5, max_length=20, pattern=r"^(\+86)?[0-9]+$", description="digits, optional +86")
    text: str = Field(min_length=1, max_length=500)


MAX_BATCH = 100


class BatchItemIn(BaseModel):
    """A message of a batch: its own idempotency key, then what a single post's body holds. Read item by item, so
    that one bad message is refused alone (`BatchIn` takes them as they come)."""

    model_config = ConfigDict(extra="ignore")

    idempotency_key: str = Field(min_length=1, max_length=MAX_KEY_CHARS)
    to: str = Field(min_length=5, max_length=20, pattern=r"^(\+86)?[0-9]+$", description="digits, optional +86")
    text: str = Field(min_length=1, max_length=500)


class BatchIn(BaseModel):
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(BaseModel):
    code: int
    body: dict[str, Any]


class BatchOut(BaseModel):
    results: list[BatchResult]


class Message(BaseModel):
    id: str
    to: str
    text: str
    received_at: datetime
    idempotency_key: str


class Messages(BaseModel):
    items: list[Message]


class ControlIn(BaseModel):
    """The fault injection; every field omitted takes its default, so `{}` turns faults off."""

    model_config = ConfigDict(extra="forbid")

    fail_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fail_status: int = Field(default=503, description="500..599, or 429 (rate limited)")
    delay_s: float = Field(default=0.0, ge=0.0, le=60.0)
    seed: int | None = Field(default=None, description="reseeds the failure draws, for a reproducible sequence")
    retry_after_s: int | None = Field(default=None, ge=0, le=3600, description="Retry-After on injected failures")

    @field_validator("fail_status")
    @classmethod
    def _failure_status(cls, value: int) -> int:
        if value != 429 and not 500 <= value <= 599:
            raise ValueError("must be 429 or between 500 and 599")
        return value


class Control(ControlIn):
    requests: int = Field(description="messages asked for since the start or the last DELETE (a batch's each count)")
    failures: int = Field(description="of which answered with an injected failure")
    in_flight: int = Field(description="messages being answered right now")


@dataclass
class GatewayState:
    control: ControlIn = field(default_factory=ControlIn)
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311 (fault injection)
    messages: list[Message] = field(default_factory=list)
    by_key: dict[str, Message] = field(default_factory=dict)
    requests: int = 0
    failures: int = 0
    in_flight: int = 0

    def snapshot(self) -> Control:
        return Control(
            **self.control.model_dump(), requests=self.requests, failures=self.failures, in_flight=self.in_flight
        )

    async def fault(self, messages: int) -> None:
        """The fault injection, drawn once for a request of `messages` messages: the delay, then maybe a failure
        (raised), as set by `POST /v1/control` when the request arrived."""
        control = self.control
        if control.delay_s:
            await asyncio.sleep(control.delay_s)
        if control.fail_rate and self.rng.random() < control.fail_rate:
            self.failures += messages
            retry_after = None if control.retry_after_s is None else {"Retry-After": str(control.retry_after_s)}
            raise Problem(
                control.fail_status,
                "Injected failure",
                "The gateway was told to fail.",
                type="injected-failure",
                headers=retry_after,
            )

    def record(self, idempotency_key: str, to: str, text: str) -> tuple[int, Message]:
        """Record a message once per key: (201, it), or (200, the first) for its key again; a `Problem` (409) for the
        key with another message. No await: checking the key and recording are one step, even for concurrent
        retries."""
        first = self.by_key.get(idempotency_key)
        if first is not None:
            if (first.to, first.text) != (to, text):
                raise Problem(
                    409,
                    "Idempotency conflict",
                    "This Idempotency-Key was used for another message.",
                    type="idempotency-conflict",
                )
            return 200, first
        message = Message(
            id=str(uuid.uuid4()), to=to, text=text, received_at=datetime.now(UTC), idempotency_key=idempotency_key
        )
        self.messages.append(message)
        self.by_key[idempotency_key] = message
        return 201, message


class _CountSends:
    """Counts every message asked for, as it arrives and while it is answered, refused ones (4xx) included: a
    single post is one; a batch's messages are counted by the route, once its body is read."""

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/messages":
            await self.app(scope, receive, send)
            return
        self.state.requests += 1
        self.state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.in_flight -= 1


def create_app(settings: SmsGatewaySettings | None = None) -> FastAPI:
    settings = settings or SmsGatewaySettings()
    state = GatewayState()
    app = FastAPI(
        title="Quanzu development SMS gateway",
        description="Records the SMS it is asked to send instead of sending them; injects faults on request.",
    )
    app.state.settings = settings
    app.state.gateway = state
    problems.install(app)
    app.add_middleware(_CountSends, state=state)
    app.include_router(operations_router(lambda: {}))

    @app.post("/v1/messages", status_code=201, response_model=Message, tags=["messages"])
    async def send(
        body: MessageIn,
        response: Response,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> Message:
        if not idempotency_key or not idempotency_key.strip():
            raise Problem(
                400, "Missing Idempotency-Key", "Send an Idempotency-Key header.", type="idempotency-key",
                errors=[{"field": "Idempotency-Key", "message": "Field required"}],
            )  # fmt: skip
        if len(idempotency_key) > MAX_KEY_CHARS:
            raise Problem(
                400, "Invalid Idempotency-Key", f"At most {MAX_KEY_CHARS} characters.", type="idempotency-key",
                errors=[{"field": "Idempotency-Key", "message": f"must be at most {MAX_KEY_CHARS} characters"}],
            )  # fmt: skip
        await state.fault(1)
        response.status_code, message = state.record(idempotency_key, body.to, body.text)
        return message

    @app.post("/v1/messages/batch", response_model=BatchOut, tags=["messages"])
    async def send_batch(body: BatchIn) -> BatchOut:
        state.requests += len(body.messages)
        state.in_flight += len(body.messages)
        try:
            await state.fault(len(body.messages))
            return BatchOut(results=[_batch_result(state, i, item) for i, item in enumerate(body.messages)])
        finally:
            state.in_flight -= len(body.messages)

    @app.get("/v1/messages", response_model=Messages, tags=["messages"])
    async def list_messages(to: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Messages:
        items = [m for m in state.messages if to is None or m.to == to]
        return Messages(items=items[-limit:])

    @app.delete("/v1/messages", status_code=204, tags=["messages"])
    async def clear_messages() -> Response:
        state.messages.clear()
        state.by_key.clear()
        state.requests = state.failures = 0
        return Response(status_code=204)

    @app.get("/v1/control", response_model=Control, tags=["control"])
    async def get_control() -> Control:
        return state.snapshot()

    @app.post("/v1/control", response_model=Control, tags=["control"])
    async def set_control(body: ControlIn) -> Control:
        state.control = body
        if body.seed is not None:
            state.rng.seed(body.seed)
        return state.snapshot()

    return app


def _batch_result(state: GatewayState, index: int, item: dict[str, Any]) -> BatchResult:
    """What a single post of the batch's `item` would have been answered; a field is named as in the batch."""
    try:
        message = BatchItemIn.model_validate(item)
    except ValidationError as exc:
        errors = [{**e, "field": f"messages[{index}].{e['field']}"} for e in problems.field_errors(exc)]
        return BatchResult(code=422, body=problems.validation_problem(errors).body())
    try:
        code, recorded = state.record(message.idempotency_key, message.to, message.text)
    except Problem as problem:
        return BatchResult(code=problem.status, body=problem.body())
    return BatchResult(code=code, body=recorded.model_dump(mode="json"))


def main() -> None:
    """`python -m services.smsgw.main`: serve the gateway on QUANZU_SMSGW_HOST:QUANZU_SMSGW_PORT (127.0.0.1:8025)."""
    import uvicorn

    configure_logging()
    settings = SmsGatewaySettings()
    uvicorn.run(create_app(settings), host=settings.smsgw_host, port=settings.smsgw_port)


if __name__ == "__main__":
    main()
