"""A copy of each member's session state (active, epoch) from `member.changed`, for services other than dispatch:
they verify tokens by signature alone, and this copy lets them end a deactivated member's sessions too."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db import SessionFactory, unit_of_work
from shared.deps import SessionLookup
from shared.events import Envelope, MemberChangedV1
from shared.scope import system_settings


def member_sessions_table(metadata: sa.MetaData, schema: str) -> sa.Table:
    return sa.Table(
        "member_sessions",
        metadata,
        sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("session_epoch", sa.Integer, nullable=False),
        schema=schema,
    )


async def apply(session: AsyncSession, table: sa.Table, envelope: Envelope) -> None:
    """Keep the newest state: events of one member arrive in order (one partition), but replays may not."""
    event = MemberChangedV1.model_validate(envelope.data)
    stmt = insert(table).values(member_id=event.member_id, active=event.active, session_epoch=event.session_epoch)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.member_id],
        set_={"active": stmt.excluded.active, "session_epoch": stmt.excluded.session_epoch},
        where=table.c.session_epoch <= stmt.excluded.session_epoch,
    )
    await (await session.connection()).execute(stmt)


def lookup(factory: SessionFactory, table: sa.Table) -> SessionLookup:
    async def state(member_id: uuid.UUID) -> tuple[bool, int] | None:
        async with unit_of_work(factory, system_settings()) as session:
            conn = await session.connection()
            row = (
                await conn.execute(
                    sa.select(table.c.active, table.c.session_epoch).where(table.c.member_id == member_id)
                )
            ).first()
        return (bool(row[0]), int(row[1])) if row else None

    return state
