"""Keeps feedback's copies from `registry.events`: area names for the bulletin, members' session state."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.areas.models import AreaView
from services.feedback.db import MEMBER_SESSIONS
from shared import member_sessions
from shared.events import AreaUpsertedV1, Envelope, MemberChangedV1

GROUP = "feedback-registry"


async def on_registry_event(session: AsyncSession, envelope: Envelope) -> None:
    if envelope.type == AreaUpsertedV1.TYPE:
        area = AreaUpsertedV1.model_validate(envelope.data)
        values = area.model_dump(include={"area_code", "area_name", "station", "street", "active"})
        stmt = insert(AreaView).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[col(AreaView.area_code)], set_={k: stmt.excluded[k] for k in values if k != "area_code"}
        )
        await session.exec(stmt)
    elif envelope.type == MemberChangedV1.TYPE:
        await member_sessions.apply(session, MEMBER_SESSIONS, envelope)
