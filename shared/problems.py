"""RFC 9457 problem+json for every error a service answers, with field-level validation errors."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import exception_chain, is_database_unavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://quanzu.dev/problems/"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type or title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers
        self.extra = extra or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": TYPE_BASE + self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def response(self, instance: str | None = None) -> Response:
        return JSONResponse(self.body(instance), self.status, headers=self.headers, media_type=PROBLEM_JSON)


def field_errors(exc: ValidationError | RequestValidationError, *, strip: int = 0) -> list[dict[str, str]]:
    """Pydantic errors as `[{"field": "subject.id_number", "message": ...}]`, never echoing the input."""
    out = []
    raw = exc.errors(include_input=False) if isinstance(exc, ValidationError) else exc.errors()
    for err in raw:
        loc = [str(p) for p in err["loc"][strip:]]
        out.append(_named(".".join(loc), str(err["msg"]).removeprefix("Value error, ")))
    return out


_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$")


def _named(field: str, message: str) -> dict[str, str]:
    """A rule across fields says which field it is about as "field: message"; name that field."""
    match = _FIELD_PREFIX.match(message)
    if match and not field:
        return {"field": match.group(1), "message": match.group(2)}
    return {"field": field or "(body)", "message": message}


def validation_problem(errors: list[dict[str, str]], detail: str = "The request has invalid fields.") -> Problem:
    return Problem(422, "Invalid request", detail, type="validation", errors=errors)


def unavailable(detail: str = "The service cannot store requests right now.", retry_after: int = 5) -> Problem:
    return Problem(503, "Service unavailable", detail, type="unavailable", headers={"Retry-After": str(retry_after)})


def nul_fields(value: Any, path: str = "") -> list[str]:
    """The paths of every string inside `value` holding a NUL character, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return [path or "(body)"] if "\x00" in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nul_fields(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nul_fields(v, f"{path}[{i}]")]
    return []


NUL_MESSAGE = "contains a NUL character, which cannot be stored"
# PostgreSQL's answer to text it cannot store (a NUL in text or jsonb): the client's input, not our fault.
_UNSTORABLE_TEXT_SQLSTATES = ("22021", "22P05")


def _unstorable_text(exc: BaseException) -> bool:
    return any(getattr(err, "sqlstate", None) in _UNSTORABLE_TEXT_SQLSTATES for err in exception_chain(exc))


def nul_request_fields(scope: Scope, body: bytes) -> list[str]:
    """Which parts of a request hold a NUL: `path.<name>`, `query.<name>`, and the body's fields as validation names
    them (a JSON body's paths, a form's field names). Runs only once the database has refused the text."""
    path_params = scope.get("path_params") or {}
    found = [f"path.{k}" for k, v in path_params.items() if isinstance(v, str) and "\x00" in v]
    query = scope.get("query_string", b"").decode("latin-1")
    found += [f"query.{k}" for k, v in parse_qsl(query, keep_blank_values=True) if "\x00" in v]
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        found += [k for k, v in parse_qsl(body.decode("latin-1"), keep_blank_values=True) if "\x00" in v]
    elif body:
        with contextlib.suppress(ValueError, RecursionError):  # not JSON (or not UTF-8): nothing more to name
            found += nul_fields(json.loads(body))
    return found


class DatabaseUnavailableMiddleware:
    """An unreachable database is the service's condition, not a bug: answer 503 with Retry-After. Text the
    database cannot store (a NUL character that slipped past validation) is the client's: answer 422.

    A middleware rather than an exception handler: Starlette re-raises whatever reaches its catch-all handler.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        body: list[bytes] = []  # kept to name the field if the database refuses its text

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, recording_receive, tracking_send)
        except Exception as exc:
            if not started and _unstorable_text(exc):
                fields = nul_request_fields(scope, b"".join(body)) or ["(body)"]
                problem = validation_problem(
                    [{"field": f, "message": NUL_MESSAGE} for f in fields], "A text field " + NUL_MESSAGE
                )
                await problem.response(scope.get("path"))(scope, receive, send)
                return
            if started or not is_database_unavailable(exc):
                raise
            log.warning("database unavailable on %s %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__)
            await unavailable().response(scope.get("path"))(scope, receive, send)


def install(app: FastAPI) -> None:
    """Every error a FastAPI app answers becomes problem+json; an unavailable database is a 503, not a 500."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return exc.response(request.url.path)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 403: "Forbidden"}.get(
            exc.status_code, "HTTP error"
        )
        headers = dict(exc.headers) if exc.headers else None
        return Problem(exc.status_code, title, str(exc.detail), headers=headers).response(request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return Problem(400, "Malformed JSON", "The body is not valid JSON.", type="malformed-json").response(
                request.url.path
            )
        fields = []
        for e in errors:
            loc = [str(p) for p in e["loc"]]
            if loc and loc[0] == "body":
                loc = loc[1:]
            fields.append(_named(".".join(loc), str(e["msg"]).removeprefix("Value error, ")))
        return validation_problem(fields).response(request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return Problem(500, "Internal error", "Something went wrong on our side.", type="internal").response()

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_middleware(DatabaseUnavailableMiddleware)
