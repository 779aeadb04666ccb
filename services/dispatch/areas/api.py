"""Admin REST for the area registry: the same import as `quanzu areas import`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.dispatch.areas import repository, service
from services.dispatch.areas.models import AreaPublic
from services.dispatch.areas.policy import parse_areas_csv
from services.dispatch.deps import MemberSessionDep
from shared.deps import AdminDep
from shared.problems import Problem, validation_problem

router = APIRouter(prefix="/v1/admin/areas", tags=["admin"])
MAX_CSV_BYTES = 2 * 1024 * 1024


class ImportResult(BaseModel):
    created: int
    updated: int
    unchanged: int


@router.post(
    "",
    response_model=ImportResult,
    openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_areas(request: Request, admin: AdminDep, session: MemberSessionDep) -> ImportResult:
    """Body: the CSV file (`area_code,area_name,station,street,district`, UTF-8). All or nothing; idempotent."""
    if not request.headers.get("content-type", "").startswith("text/csv"):
        raise Problem(415, "Unsupported media type", "Send the file as text/csv.", type="unsupported-media-type")
    data = await request.body()
    if len(data) > MAX_CSV_BYTES:
        raise Problem(413, "Payload too large", f"The file exceeds {MAX_CSV_BYTES} bytes.", type="payload-too-large")
    rows, errors = parse_areas_csv(data)
    if errors:
        raise validation_problem(
            [{"field": f"line {e.line}: {e.field}", "message": e.message} for e in errors],
            "Nothing was imported: the file has errors.",
        )
    summary = await service.import_areas(session, rows)
    return ImportResult(created=summary.created, updated=summary.updated, unchanged=summary.unchanged)


@router.get("", response_model=list[AreaPublic])
async def list_areas(admin: AdminDep, session: MemberSessionDep) -> list[AreaPublic]:
    return [AreaPublic.model_validate(a, from_attributes=True) for a in await repository.list_all(session)]
