"""Members: creation with argon2id password hashes, deactivation that ends every session, and scopes."""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.auth import repository as auth_repository
from services.dispatch.db import OUTBOX
from services.dispatch.members import repository
from services.dispatch.members.models import Member, MemberCreate
from services.dispatch.members.policy import affiliation_error, one_time_password, password_error
from services.dispatch.teams import repository as teams
from shared.auth import FIELD_ROLES, Principal
from shared.events import Envelope, MemberChangedV1, Topic
from shared.outbox import enqueue

EVENT_SOURCE = "quanzu/dispatch"
#: The field that says where a member of each role belongs (an admin: `district`).
_AFFILIATION = {**dict.fromkeys(FIELD_ROLES, "team"), "operator": "station", "supervisor": "station"}
HASHER = PasswordHasher()  # argon2id with the library's current recommended cost


class MemberError(Exception):
    """A request the registry refuses: `field` names what it is about; `status` 409 for a conflict with what is
    stored (a taken username, an unknown team or station), 422 for a request that is invalid in itself."""

    def __init__(self, message: str, field: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow and memory-hard: keep it off the event loop.
    return await asyncio.to_thread(HASHER.hash, password)


@functools.cache
def _dummy_hash() -> str:
    # Made on first use, not at import: every `quanzu serve` imports this module, and one argon2 hash briefly takes
    # 64 MiB, which set the peak memory of intake, feedback and the SMS gateway, none of which ever logs anyone in.
    return HASHER.hash("a password nobody has")


def _verify(password_hash: str | None, password: str) -> bool:
    return HASHER.verify(password_hash or _dummy_hash(), password) and bool(password_hash)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the member exists, so timing does not reveal usernames."""
    try:
        return await asyncio.to_thread(_verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def add_member(session: AsyncSession, data: MemberCreate) -> tuple[Member, str | None]:
    """Create a member; returns it with its generated one-time password (None if one was given)."""
    error = affiliation_error(
        data.role, team=data.team is not None, station=data.station is not None, district=data.district
    )
    if error:
        raise MemberError(error, _AFFILIATION.get(data.role, "district"), status=422)
    if await repository.get_by_username(session, data.username) is not None:
        raise MemberError(f"member {data.username!r} already exists", "username")
    generated = None if data.password else one_time_password()
    password = data.password or generated
    assert password is not None
    if (problem := password_error(password)) is not None:
        raise MemberError(f"password {problem}", "password", status=422)
    team_id = None
    station = data.station
    if data.team is not None:
        team = await teams.get_by_name(session, data.team)
        if team is None:
            raise MemberError(f"no team named {data.team!r}", "team")
        team_id, station = team.id, team.station
    elif station is not None and not await repository.station_areas(session, station):
        raise MemberError(f"no station named {station!r} in the area registry", "station")
    member = Member(
        username=data.username,
        display_name=data.name,
        role=data.role,
        team_id=team_id,
        station=station,
        password_hash=await hash_password(password),
    )
    await repository.add(session, member)
    await _publish(session, member)
    return member, generated


async def deactivate(session: AsyncSession, username: str) -> Member:
    member = await repository.get_by_username(session, username)
    if member is None:
        raise MemberError(f"no member named {username!r}", "username")
    member.active = False
    member.session_epoch += 1
    member.deactivated_at = datetime.now(UTC)
    session.add(member)
    await auth_repository.revoke_member_tokens(session, member.id)
    await session.flush()
    await _publish(session, member)
    return member


async def principal_for(session: AsyncSession, member: Member) -> Principal:
    if member.role in FIELD_ROLES and member.team_id is not None:
        team = await teams.get(session, member.team_id)
        areas = frozenset({team.area_code}) if team else frozenset()
    elif member.station is not None:
        areas = frozenset(await repository.station_areas(session, member.station))
    else:
        areas = frozenset()
    return Principal(
        member_id=member.id,
        username=member.username,
        role=member.role,
        epoch=member.session_epoch,
        team_id=member.team_id,
        station=member.station,
        areas=areas,
    )


async def is_session_current(session: AsyncSession, member_id: uuid.UUID, epoch: int) -> bool:
    state = await repository.session_state(session, member_id)
    return state is not None and state[0] and state[1] == epoch


async def _publish(session: AsyncSession, member: Member) -> None:
    data = MemberChangedV1(member_id=member.id, active=member.active, session_epoch=member.session_epoch)
    await enqueue(
        session,
        OUTBOX,
        Topic.REGISTRY_EVENTS,
        str(member.id),
        Envelope.new(data.TYPE, EVENT_SOURCE, data, subject=str(member.id)),
    )
