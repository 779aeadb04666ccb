"""GET /v1/dev/notifications: who was told what and when, as the development notifier recorded it."""

import uuid

from fastapi import APIRouter, Depends

from services.dispatch.deps import MemberSessionDep
from services.dispatch.notify import service
from services.dispatch.notify.models import NotificationPublic
from shared.auth import Principal
from shared.deps import require_roles
from shared.pagination import Limit

router = APIRouter(prefix="/v1/dev", tags=["development"])


@router.get("/notifications", response_model=list[NotificationPublic])
async def notifications(
    session: MemberSessionDep,
    principal: Principal = Depends(require_roles("supervisor", "admin")),
    case_id: uuid.UUID | None = None,
    recipient: str | None = None,
    limit: Limit = 50,
) -> list[NotificationPublic]:
    rows = await service.recorded(session, case_id=case_id, recipient=recipient, limit=limit)
    return [NotificationPublic.model_validate(n, from_attributes=True) for n in rows]
