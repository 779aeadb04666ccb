"""Keeps intake's copy of the area registry from `registry.events`."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.areas import repository
from shared.events import AreaUpsertedV1, Envelope

GROUP = "intake-registry"


async def on_registry_event(session: AsyncSession, envelope: Envelope) -> None:
    if envelope.type == AreaUpsertedV1.TYPE:
        area = AreaUpsertedV1.model_validate(envelope.data)
        await repository.upsert(session, area.area_code, active=area.active)
