from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas.models import Area


async def get_many(session: AsyncSession, codes: Collection[str], *, lock: bool = False) -> dict[str, Area]:
    """Of `codes`, the areas the registry has (retired ones too), in one query; locked for an import."""
    if not codes:
        return {}
    stmt = select(Area).where(col(Area.area_code).in_(codes))
    rows = await session.exec(stmt.with_for_update() if lock else stmt)
    return {a.area_code: a for a in rows.all()}


async def list_all(session: AsyncSession) -> list[Area]:
    return list((await session.exec(select(Area).order_by(col(Area.area_code)))).all())


async def save(session: AsyncSession, areas: list[Area]) -> None:
    session.add_all(areas)
    await session.flush()
