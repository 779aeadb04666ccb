"""Alerts to people: new tasks, re-notifications, supervisor alerts. One interface; the development
implementation records them where tests and the demo can read them (GET /v1/dev/notifications)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.notify.models import Notification
from shared.db import insert_rows

NOTIFICATIONS = Notification.__table__  # type: ignore[attr-defined]


class Notifier(Protocol):
    async def notify(
        self,
        session: AsyncSession,
        *,
        recipient_kind: str,
        recipient: str,
        kind: str,
        message: str,
        case_id: uuid.UUID | None = None,
        task_id: uuid.UUID | None = None,
    ) -> None: ...


class RecordingNotifier:
    async def notify(
        self,
        session: AsyncSession,
        *,
        recipient_kind: str,
        recipient: str,
        kind: str,
        message: str,
        case_id: uuid.UUID | None = None,
        task_id: uuid.UUID | None = None,
    ) -> None:
        row = {"id": uuid.uuid4(), "at": datetime.now(UTC), "recipient_kind": recipient_kind, "recipient": recipient,
               "kind": kind, "message": message, "case_id": case_id, "task_id": task_id}  # fmt: skip
        await insert_rows(session, NOTIFICATIONS, [row])


async def recorded(
    session: AsyncSession, *, case_id: uuid.UUID | None, recipient: str | None, limit: int
) -> list[Notification]:
    stmt = select(Notification).order_by(col(Notification.at).desc()).limit(limit)
    if case_id is not None:
        stmt = stmt.where(Notification.case_id == case_id)
    if recipient is not None:
        stmt = stmt.where(Notification.recipient == recipient)
    return list((await session.exec(stmt)).all())
