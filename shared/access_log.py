"""The append-only log of every read of a full, unmasked personal field: who, when, what, and why.

No `from __future__ import annotations` here: the router's session parameter is annotated with a dependency
known only at run time, which FastAPI must be able to evaluate.
"""

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Principal
from shared.deps import AdminDep
from shared.instants import QueryInstant
from shared.pagination import Cursor, Limit, Page, bad_cursor, decode_cursor, encode_cursor, is_row_id

#: How long entries are kept at the least (DOMAIN.md: at least six months); the purge only removes older ones.
MIN_RETENTION_DAYS = 183


def access_log_table(metadata: sa.MetaData, schema: str) -> sa.Table:
    return sa.Table(
        "access_log",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now(), index=True),
        sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("object_type", sa.Text, nullable=False),
        sa.Column("object_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("case_id", UUID(as_uuid=True), nullable=True, index=True),
        sa.Column("fields", ARRAY(sa.Text), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        schema=schema,
        # Members may add entries but not read them back (only admins read the log): no INSERT ... RETURNING.
        implicit_returning=False,
    )


def append_only_sql(schema: str) -> list[str]:
    """DDL for migrations: entries can be added and read, never changed, and removed only once old enough."""
    return [
        f"""CREATE OR REPLACE FUNCTION {schema}.access_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF TG_OP = 'UPDATE' THEN RAISE EXCEPTION 'the access log is append-only'; END IF;
              IF OLD.at > now() - interval '{MIN_RETENTION_DAYS} days' THEN
                RAISE EXCEPTION 'access log entries are kept at least {MIN_RETENTION_DAYS} days';
              END IF;
              RETURN OLD;
            END $$""",
        f"""CREATE TRIGGER access_log_guard BEFORE UPDATE OR DELETE ON {schema}.access_log
            FOR EACH ROW EXECUTE FUNCTION {schema}.access_log_guard()""",
    ]


async def record(
    session: AsyncSession,
    table: sa.Table,
    principal: Principal,
    *,
    object_type: str,
    object_id: uuid.UUID,
    fields: list[str],
    reason: str,
    case_id: uuid.UUID | None = None,
) -> None:
    conn = await session.connection()
    await conn.execute(
        sa.insert(table).values(
            member_id=principal.member_id,
            username=principal.username,
            role=principal.role,
            object_type=object_type,
            object_id=object_id,
            case_id=case_id,
            fields=fields,
            reason=reason,
        )
    )


async def query(
    session: AsyncSession,
    table: sa.Table,
    *,
    since: datetime | None,
    until: datetime | None,
    member_id: uuid.UUID | None,
    object_id: uuid.UUID | None,
    limit: int,
    before_id: int | None,
) -> list[dict[str, object]]:
    t = table
    stmt = sa.select(t).order_by(t.c.id.desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(t.c.at >= since)
    if until is not None:
        stmt = stmt.where(t.c.at < until)
    if member_id is not None:
        stmt = stmt.where(t.c.member_id == member_id)
    if object_id is not None:
        stmt = stmt.where(sa.or_(t.c.object_id == object_id, t.c.case_id == object_id))
    if before_id is not None:
        stmt = stmt.where(t.c.id < before_id)
    conn = await session.connection()
    return [dict(row._mapping) for row in (await conn.execute(stmt)).all()]


class AccessLogEntry(BaseModel):
    id: int
    at: datetime
    member_id: uuid.UUID
    username: str
    role: str
    object_type: str
    object_id: uuid.UUID
    case_id: uuid.UUID | None
    fields: list[str]
    reason: str


SessionDependency = Callable[..., AsyncIterator[AsyncSession]]


def access_log_router(table: sa.Table, session_dependency: Any) -> APIRouter:
    """GET /v1/admin/access-log: who read which full personal fields, newest first (admins only)."""
    router = APIRouter(prefix="/v1/admin", tags=["admin"])

    @router.get("/access-log", response_model=Page[AccessLogEntry])
    async def read_access_log(
        admin: AdminDep,
        session: Annotated[AsyncSession, session_dependency],
        since: QueryInstant | None = None,
        until: QueryInstant | None = None,
        member_id: uuid.UUID | None = None,
        object_id: uuid.UUID | None = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[AccessLogEntry]:
        before = decode_cursor(cursor)
        if before is not None and not is_row_id(before):
            raise bad_cursor()
        rows = await query(
            session,
            table,
            since=since,
            until=until,
            member_id=member_id,
            object_id=object_id,
            limit=limit + 1,
            before_id=int(before) if before else None,
        )
        items = [AccessLogEntry.model_validate(r) for r in rows[:limit]]
        next_cursor = encode_cursor(str(items[-1].id)) if len(rows) > limit else None
        return Page[AccessLogEntry](items=items, next_cursor=next_cursor)

    return router
