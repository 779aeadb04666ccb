"""POST /v1/fraud-reports: the upstream crime-report feed (contract §4), authenticated by the feed's API key."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import JSONResponse

from services.feedback.deps import SettingsDep
from services.feedback.fraud_reports import repository, service
from services.feedback.fraud_reports.models import FraudReportCreate, FraudReportPublic
from shared import scope
from shared.apikeys import hash_api_key
from shared.auth import looks_like_jwt
from shared.deps import bearer, scoped_session, unauthorized
from shared.problems import Problem

router = APIRouter(prefix="/v1/fraud-reports", tags=["fraud reports"])


async def _feed_session(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> AsyncIterator[tuple[str, AsyncSession]]:
    """The feed's name and a transaction. Feeds are machines acting through fixed code, so the transaction runs
    in the service's own scope; the response tells the feed nothing about warnings (no match counts), so the
    endpoint cannot be used to learn whether someone was warned."""
    credential = bearer(authorization) or x_api_key
    if credential and looks_like_jwt(credential):
        await request.app.state.authenticator.principal(credential)  # 401 unless a valid member's token
        raise Problem(403, "Forbidden", "Only crime-report feeds post reports, with their API key.", type="forbidden")
    if not credential or len(credential) > 256:
        raise unauthorized("Send your feed's API key as `Authorization: Bearer <key>` or `X-API-Key`.")
    async for session in scoped_session(request.app.state.runtime.factory, scope.system_settings()):
        feed = await repository.feed_by_key_hash(session, hash_api_key(credential))
        if feed is None:
            raise unauthorized("Unknown or revoked API key.")
        yield feed.name, session


FeedSessionDep = Annotated[tuple[str, AsyncSession], Depends(_feed_session, scope="function")]


@router.post("", status_code=201, response_model=FraudReportPublic, responses={200: {"model": FraudReportPublic}})
async def receive_fraud_report(data: FraudReportCreate, feed: FeedSessionDep, settings: SettingsDep) -> JSONResponse:
    """Store a crime report (once per `external_id`: a retry answers 200 with the first report) and match it to
    warnings of the same phone or ID number in the window before it, to count post-warning cases."""
    name, session = feed
    try:
        report, created = await service.receive(
            session, name, data, secret=settings.subject_key_secret.get_secret_value(),
            window=settings.post_warning_window,
        )  # fmt: skip
    except service.InvalidReport as exc:
        raise Problem(
            422, "Invalid request", str(exc), type="validation", errors=[{"field": exc.field, "message": str(exc)}]
        ) from None
    except service.ReportConflict as exc:
        raise Problem(409, "Conflict", str(exc), type="report-conflict") from None
    body = FraudReportPublic(
        id=report.id, external_id=report.external_id, reported_at=report.reported_at,
        status="created" if created else "duplicate",
    )  # fmt: skip
    return JSONResponse(body.model_dump(mode="json"), 201 if created else 200)
