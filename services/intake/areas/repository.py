from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.areas.models import KnownArea


async def upsert(session: AsyncSession, area_code: str, *, active: bool) -> None:
    stmt = insert(KnownArea).values(area_code=area_code, active=active)
    stmt = stmt.on_conflict_do_update(
        index_elements=[col(KnownArea.area_code)],
        set_={"active": active, "updated_at": stmt.excluded.updated_at},
    )
    await session.exec(stmt)


async def active_codes(session: AsyncSession) -> set[str]:
    rows = await session.exec(select(KnownArea.area_code).where(col(KnownArea.active).is_(True)))
    return set(rows.all())
