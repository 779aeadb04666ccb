from __future__ import annotations

import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.teams.models import Team


async def get(session: AsyncSession, team_id: uuid.UUID) -> Team | None:
    return await session.get(Team, team_id)


async def get_by_name(session: AsyncSession, name: str) -> Team | None:
    return (await session.exec(select(Team).where(Team.name == name))).first()


async def list_all(session: AsyncSession) -> list[Team]:
    return list((await session.exec(select(Team).order_by(col(Team.station), col(Team.name)))).all())


async def add(session: AsyncSession, team: Team) -> Team:
    session.add(team)
    await session.flush()
    return team
