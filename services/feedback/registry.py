"""Keeps feedback's copies from `registry.events` (members' session state; areas join with the rates)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.db import MEMBER_SESSIONS
from shared import member_sessions
from shared.events import Envelope, MemberChangedV1

GROUP = "feedback-registry"


async def on_registry_event(session: AsyncSession, envelope: Envelope) -> None:
    if envelope.type == MemberChangedV1.TYPE:
        await member_sessions.apply(session, MEMBER_SESSIONS, envelope)
