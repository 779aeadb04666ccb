"""HTTP helpers shared by the services: strict JSON bodies and request timing."""

from __future__ import annotations

import time
from typing import Any

import orjson
from prometheus_client import Histogram
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.problems import Problem


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body as JSON: 415 if not declared JSON, 413 past `max_bytes` (checked while reading), 400 if malformed."""
    if not _is_json(request.headers.get("content-type", "")):
        raise Problem(
            415, "Unsupported media type", "Send the body as application/json.", type="unsupported-media-type"
        )
    too_large = Problem(413, "Payload too large", f"The body exceeds {max_bytes} bytes.", type="payload-too-large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "Malformed JSON", f"The body is not valid JSON: {exc}", type="malformed-json") from None


class RequestTimer:
    """ASGI middleware observing each request's duration in `histogram`, labelled by route template."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.histogram.labels(path).observe(time.perf_counter() - start)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its local `#/$defs/...` references replaced by the definitions (no recursive models)."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
