"""GET /v1/stats/rates and GET /v1/reports/monthly (contract §5): scoped to what the caller may see."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from starlette.responses import JSONResponse, Response

from services.feedback.deps import SettingsDep, SnapshotSessionDep
from services.feedback.metrics import RATES_QUERY_SECONDS
from services.feedback.stats import policy, service
from shared.problems import Problem

router = APIRouter(tags=["rates"])


def _invalid(exc: policy.InvalidQuery) -> Problem:
    return Problem(
        422, "Invalid request", str(exc), type="validation", errors=[{"field": exc.field, "message": exc.message}]
    )


@router.get("/v1/stats/rates")
async def get_rates(
    session: SnapshotSessionDep,
    settings: SettingsDep,
    from_: Annotated[str | None, Query(alias="from", max_length=40, description="ISO date or date-time")] = None,
    to: Annotated[str | None, Query(max_length=40, description="exclusive; ISO date or date-time")] = None,
    group_by: Annotated[str | None, Query(max_length=200, description="e.g. area,fraud_type or month")] = None,
) -> dict[str, Any]:
    """Every rate of contract §5 with its numerator and denominator, over [from, to) by warning intake time
    (dates and times without an offset are the district's local time; by default the current month), grouped by
    any of area, station, street, team, fraud_type, source and one of day/week/month. A rate with nothing to
    divide by is null."""
    try:
        groups = policy.parse_group_by(group_by)
        start, end = policy.window(from_, to, settings.zone, datetime.now(UTC))
    except policy.InvalidQuery as exc:
        raise _invalid(exc) from None
    with RATES_QUERY_SECONDS.labels("rates").time():
        return await service.rates(session, groups, start, end, settings.zone)


@router.get("/v1/reports/monthly", responses={200: {"content": {"text/csv": {}}}})
async def monthly_bulletin(
    session: SnapshotSessionDep,
    settings: SettingsDep,
    month: Annotated[str, Query(max_length=7, description="YYYY-MM, the district's local month")],
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """The monthly bulletin: areas and streets ranked by post-warning cases and dissuasion rate, the worst three
    flagged, and streets among the worst three in both of the last two complete quarters flagged `supervised`
    (挂牌督办). As CSV with `Accept: text/csv` (UTF-8 with a byte-order mark)."""
    try:
        parsed = policy.Month.parse(month)
    except policy.InvalidQuery as exc:
        raise _invalid(exc) from None
    with RATES_QUERY_SECONDS.labels("monthly").time():
        bulletin = await service.monthly(session, parsed, settings.zone)
    if accept and "text/csv" in accept:
        return Response(
            service.bulletin_csv(bulletin).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="quanzu-bulletin-{parsed}.csv"'},
        )
    return JSONResponse(bulletin)
