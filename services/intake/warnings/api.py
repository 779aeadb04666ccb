"""Intake's HTTP surface for upstream systems (contract §1). Thin: parse, call the service, answer."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response

from services.intake.deps import CREDENTIAL_HEADERS, CallerDep, IntakeState, SessionDep, posting_source
from services.intake.metrics import WARNINGS_RECEIVED
from services.intake.sources.models import SourceIdentity
from services.intake.sources.policy import retry_after_header
from services.intake.warnings import service
from services.intake.warnings.models import BatchCreate, WarningAccepted, WarningCreate, WarningPublic
from services.intake.warnings.policy import Verdict, may_hold_nul, record_errors, unassigned_detail
from shared.events import FRAUD_TYPES, RISK_LEVELS
from shared.http import inline_refs, read_json
from shared.problems import NUL_MESSAGE, Problem, field_errors, nul_fields, validation_problem

router = APIRouter(prefix="/v1/warnings", tags=["warnings"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, **_PROBLEM}
    for code, text in {
        400: "Malformed JSON",
        401: "Missing or unknown API key",
        409: "Same external_id with different content",
        413: "Body too large",
        415: "Not JSON",
        422: "Invalid record",
        429: "Rate limit exceeded (see Retry-After)",
        503: "Cannot store right now (see Retry-After)",
    }.items()
}


def _posting_openapi(model: type[Any]) -> dict[str, Any]:
    # The body is read by hand (for 400/413/415 control), so its schema is given here, self-contained: pydantic's
    # "#/$defs/..." references would point nowhere inside the OpenAPI document. The credentials are read by hand
    # too (`posting_source`).
    return {
        "parameters": CREDENTIAL_HEADERS,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_refs(model.model_json_schema())}},
        },
    }


def _throttle(state: IntakeState, source: SourceIdentity, cost: int) -> None:
    wait = state.sources.throttle(source, cost)
    if wait is not None:
        raise Problem(
            429,
            "Too many requests",
            f"Source {source.name!r} exceeds its rate limit of {source.rate_per_s:g} records/s.",
            type="rate-limited",
            headers={"Retry-After": retry_after_header(wait)},
        )


def _parse(item: Any, source: str, state: IntakeState, *, prefix: str = "") -> WarningCreate | list[dict[str, str]]:
    """A validated record, or the field errors that make it invalid."""
    if not isinstance(item, dict):
        return [{"field": prefix.rstrip(".") or "(body)", "message": "must be a JSON object"}]
    if may_hold_nul(item) and (nul := nul_fields(item)):
        return [{"field": prefix + path, "message": NUL_MESSAGE} for path in nul]
    try:
        record = WarningCreate.model_validate(item)
    except ValidationError as exc:
        return [{**e, "field": prefix + e["field"]} for e in field_errors(exc)]
    skew = timedelta(seconds=state.settings.max_clock_skew_s)
    errors = record_errors(record, source=source, now=datetime.now(UTC), max_skew=skew)
    return [{**e, "field": prefix + e["field"]} for e in errors] or record


def _label(raw: Any, key: str, allowed: tuple[str, ...]) -> str:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if value in allowed else "invalid"


def _count(source: str, raw: Any, result: str) -> None:
    _count_all(source, [(raw, result)])


def _count_all(source: str, outcomes: list[tuple[Any, str]]) -> None:
    """One increment per label combination, not per record: a batch's thousand records are a handful of them."""
    tally = Counter(
        (_label(raw, "fraud_type", FRAUD_TYPES), _label(raw, "risk_level", RISK_LEVELS), result)
        for raw, result in outcomes
    )
    for (fraud_type, risk_level, result), n in tally.items():
        WARNINGS_RECEIVED.labels(source, fraud_type, risk_level, result).inc(n)


async def _count_after_response(source: str, outcomes: list[tuple[Any, str]]) -> None:
    # A coroutine, so that the background task runs on the event loop rather than hopping to a worker thread.
    _count_all(source, outcomes)


def _accepted_body(result: service.Accepted) -> dict[str, Any]:
    """`WarningAccepted` as JSON (the response model documents it; a dict per record costs far less to build)."""
    body: dict[str, Any] = {
        "id": str(result.id),
        "status": "accepted",
        "duplicate": result.verdict is Verdict.DUPLICATE,
        "assigned": result.assigned,
    }
    if not result.assigned:
        body["queue"] = "unassigned"
    return body


@router.post(
    "",
    status_code=202,
    response_model=WarningAccepted,
    responses=_ERRORS,
    openapi_extra=_posting_openapi(WarningCreate),
)
async def post_warning(request: Request) -> JSONResponse:
    state, source = await posting_source(request)
    _throttle(state, source, 1)
    raw = await read_json(request, state.settings.max_body_bytes)
    parsed = _parse(raw, source.name, state)
    if isinstance(parsed, list):
        _count(source.name, raw, "rejected")
        raise validation_problem(parsed, "The warning record is invalid.")
    [result] = await service.accept(
        state.pool,
        source.name,
        [parsed],
        known_areas=state.areas,
        subject_secret=state.settings.subject_key_secret.get_secret_value(),
    )
    if result.verdict is Verdict.CONFLICT:
        _count(source.name, raw, "rejected")
        raise Problem(
            409,
            "Conflict",
            f"external_id {parsed.external_id!r} was already posted by this source with different content.",
            type="idempotency-conflict",
            extra={"id": str(result.id)},
        )
    body = _accepted_body(result)
    if not result.assigned and result.verdict is Verdict.ACCEPTED:
        body["detail"] = unassigned_detail(parsed.area_code)
    # Counted after the commit (background tasks run once the response is sent): a 503 counts nothing.
    counted = "duplicate" if result.verdict is Verdict.DUPLICATE else "accepted"
    return JSONResponse(body, 202, background=BackgroundTask(_count_after_response, source.name, [(raw, counted)]))


@router.post("/batch", responses=_ERRORS, openapi_extra=_posting_openapi(BatchCreate))
async def post_batch(request: Request) -> Response:
    """Up to 1,000 records. `results` answers each in request order: `code` is the HTTP status a single post of
    that record would get (202, 409, 422), with that answer's body; 202 means that record is stored."""
    state, source = await posting_source(request)
    raw = await read_json(request, state.settings.batch_max_bytes)
    try:
        batch = BatchCreate.model_validate(raw)
    except ValidationError as exc:
        raise validation_problem(field_errors(exc), 'The body must be {"warnings": [...]}.') from None
    limit = state.settings.batch_max_records
    if len(batch.warnings) > limit:
        raise Problem(413, "Payload too large", f"A batch holds at most {limit} records.", type="batch-too-large")
    _throttle(state, source, max(len(batch.warnings), 1))

    parsed = [_parse(item, source.name, state, prefix=f"warnings[{i}].") for i, item in enumerate(batch.warnings)]
    valid = [(i, p) for i, p in enumerate(parsed) if isinstance(p, WarningCreate)]
    accepted = await service.accept(
        state.pool,
        source.name,
        [p for _, p in valid],
        known_areas=state.areas,
        subject_secret=state.settings.subject_key_secret.get_secret_value(),
    )
    by_index = dict(zip((i for i, _ in valid), accepted, strict=True))
    results: list[dict[str, Any]] = []
    outcomes: list[tuple[Any, str]] = []
    for i, item in enumerate(parsed):
        result = by_index.get(i)
        if isinstance(item, list):
            results.append({"index": i, "code": 422, "status": "rejected", "errors": item})
            outcomes.append((batch.warnings[i], "rejected"))
        elif result is not None and result.verdict is Verdict.CONFLICT:
            results.append(
                {
                    "index": i,
                    "code": 409,
                    "status": "conflict",
                    "id": str(result.id),
                    "detail": "same external_id, different content",
                }
            )
            outcomes.append((batch.warnings[i], "rejected"))
        elif result is not None:
            results.append({"index": i, "code": 202, **_accepted_body(result)})
            outcomes.append((batch.warnings[i], "duplicate" if result.verdict is Verdict.DUPLICATE else "accepted"))
    summary = {k: sum(1 for _, r in outcomes if r == k) for k in ("accepted", "duplicate", "rejected")}
    return Response(
        orjson.dumps({"results": results, **summary}),
        200,
        media_type="application/json",
        background=BackgroundTask(_count_after_response, source.name, outcomes),
    )


@router.get("/{warning_id}", response_model=WarningPublic, responses=_ERRORS)
async def get_warning(
    warning_id: uuid.UUID,
    caller: CallerDep,
    session: SessionDep,
    reason: Annotated[str | None, Query(max_length=200, description="why an admin reads full personal data")] = None,
) -> WarningPublic:
    """The record as stored. A source sees its own records; a member those of their areas; masked for all but
    admins, whose read is access-logged. Anything else is 404, so ids cannot be probed."""
    warning = await service.read(session, warning_id, caller, reason=reason)
    if warning is None:
        raise Problem(404, "Not found", "No such warning.", type="not-found")
    return warning
