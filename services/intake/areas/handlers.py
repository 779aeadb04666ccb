"""Keeps intake's copies from `registry.events`: the known area codes and members' session state."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.areas import repository
from services.intake.db import MEMBER_SESSIONS
from shared import member_sessions
from shared.events import AreaUpsertedV1, Envelope, MemberChangedV1

GROUP = "intake-registry"


async def on_registry_event(session: AsyncSession, envelope: Envelope) -> None:
    if envelope.type == AreaUpsertedV1.TYPE:
        area = AreaUpsertedV1.model_validate(envelope.data)
        await repository.upsert(session, area.area_code, active=area.active)
    elif envelope.type == MemberChangedV1.TYPE:
        await member_sessions.apply(session, MEMBER_SESSIONS, envelope)
