"""`Idempotency-Key` for members' POSTs (contract §4): phones on bad networks retry, and a retry must return
the first answer and change nothing.

The answer is stored in the same transaction as the effect it answers for, so either both exist or neither;
requests with the same key are serialised by a transaction-scoped advisory lock, so two concurrent retries
cannot both act.
"""

import hashlib
import uuid
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.problems import Problem


def idempotency_table(metadata: sa.MetaData, schema: str) -> sa.Table:
    return sa.Table(
        "idempotency_keys",
        metadata,
        sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now(), index=True),
        schema=schema,
    )


def fingerprint(method: str, path: str, body: Any) -> str:
    return hashlib.sha256(orjson.dumps([method, path, body], option=orjson.OPT_SORT_KEYS)).hexdigest()


async def replay(
    session: AsyncSession, table: sa.Table, member_id: uuid.UUID, key: str | None, print_: str
) -> tuple[int, Any] | None:
    """The stored answer for this key, or None to go ahead (then `remember` the answer in this transaction)."""
    if key is None:
        return None
    if not 1 <= len(key) <= 200:
        raise Problem(
            422, "Invalid request", "Idempotency-Key must be 1 to 200 characters.", type="validation",
            errors=[{"field": "Idempotency-Key", "message": "must be 1 to 200 characters"}],
        )  # fmt: skip
    conn = await session.connection()
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"{member_id}:{key}", 0))))
    row = (
        await conn.execute(
            sa.select(table.c.fingerprint, table.c.status, table.c.body).where(
                table.c.member_id == member_id, table.c.key == key
            )
        )
    ).first()
    if row is None:
        return None
    if row.fingerprint != print_:
        raise Problem(
            422,
            "Invalid request",
            "This Idempotency-Key was used for a different request.",
            type="idempotency-mismatch",
            errors=[{"field": "Idempotency-Key", "message": "was used for a different request"}],
        )  # fmt: skip
    return int(row.status), row.body


async def remember(
    session: AsyncSession, table: sa.Table, member_id: uuid.UUID, key: str | None, print_: str, status: int, body: Any
) -> None:
    if key is None:
        return
    conn = await session.connection()
    await conn.execute(
        sa.insert(table).values(member_id=member_id, key=key, fingerprint=print_, status=status, body=body)
    )
