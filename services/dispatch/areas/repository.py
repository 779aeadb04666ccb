from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas.models import Area


async def get_many(session: AsyncSession, codes: list[str]) -> dict[str, Area]:
    if not codes:
        return {}
    rows = await session.exec(select(Area).where(col(Area.area_code).in_(codes)).with_for_update())
    return {a.area_code: a for a in rows.all()}


async def active(session: AsyncSession, codes: set[str]) -> dict[str, Area]:
    """Of `codes`, the areas the registry has and has not retired, in one query."""
    if not codes:
        return {}
    rows = await session.exec(select(Area).where(col(Area.area_code).in_(codes), col(Area.active).is_(True)))
    return {a.area_code: a for a in rows.all()}


async def list_all(session: AsyncSession) -> list[Area]:
    return list((await session.exec(select(Area).order_by(col(Area.area_code)))).all())


async def save(session: AsyncSession, areas: list[Area]) -> None:
    session.add_all(areas)
    await session.flush()
