from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas.models import Area
from services.dispatch.teams import repository
from services.dispatch.teams.models import Team, TeamCreate


class TeamError(Exception):
    """A team the registry refuses (an unknown area, a taken name); `field` names what it is about."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


async def add_team(session: AsyncSession, data: TeamCreate) -> Team:
    area = await session.get(Area, data.area_code)
    if area is None:
        raise TeamError(f"no area {data.area_code!r} in the registry: import it first", "area_code")
    if await repository.get_by_name(session, data.name) is not None:
        raise TeamError(f"team {data.name!r} already exists", "name")
    return await repository.add(
        session, Team(name=data.name, area_code=area.area_code, station=area.station, backup=data.backup)
    )
