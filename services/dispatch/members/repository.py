from __future__ import annotations

import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas.models import Area
from services.dispatch.members.models import Member


async def get(session: AsyncSession, member_id: uuid.UUID) -> Member | None:
    return await session.get(Member, member_id)


async def get_by_username(session: AsyncSession, username: str) -> Member | None:
    return (await session.exec(select(Member).where(Member.username == username))).first()


async def list_visible(session: AsyncSession) -> list[Member]:
    """Every member the caller's scope lets them see (row-level security filters the rest)."""
    return list((await session.exec(select(Member).order_by(col(Member.username)))).all())


async def add(session: AsyncSession, member: Member) -> Member:
    session.add(member)
    await session.flush()
    return member


async def station_areas(session: AsyncSession, station: str) -> list[str]:
    rows = await session.exec(select(Area.area_code).where(Area.station == station, col(Area.active).is_(True)))
    return list(rows.all())


async def session_state(session: AsyncSession, member_id: uuid.UUID) -> tuple[bool, int] | None:
    row = (await session.exec(select(Member.active, Member.session_epoch).where(Member.id == member_id))).first()
    return (row[0], row[1]) if row else None
