"""The area registry: imports are idempotent, and every change is published for the other services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.areas import repository
from services.dispatch.areas.models import Area, AreaCreate
from services.dispatch.db import OUTBOX
from shared.events import AreaUpsertedV1, Envelope, Topic
from shared.outbox import enqueue_many

EVENT_SOURCE = "quanzu/dispatch"


@dataclass(frozen=True)
class ImportSummary:
    created: int
    updated: int
    unchanged: int


async def import_areas(session: AsyncSession, rows: list[AreaCreate]) -> ImportSummary:
    existing = await repository.get_many(session, [r.area_code for r in rows], lock=True)
    created = updated = 0
    changed: list[Area] = []
    now = datetime.now(UTC)
    for row in rows:
        area = existing.get(row.area_code)
        if area is None:
            area = Area(**row.model_dump(), updated_at=now)
            created += 1
        elif AreaCreate.model_validate(area, from_attributes=True) != row or not area.active:
            area.sqlmodel_update({**row.model_dump(), "active": True, "updated_at": now})
            updated += 1
        else:
            continue
        changed.append(area)
    await repository.save(session, changed)
    await _publish(session, changed)
    return ImportSummary(created, updated, len(rows) - created - updated)


async def republish_all(session: AsyncSession) -> int:
    """Publish every area again: for a service whose copy must be rebuilt, or a broker that lost its data."""
    areas = await repository.list_all(session)
    await _publish(session, areas)
    return len(areas)


async def _publish(session: AsyncSession, areas: list[Area]) -> None:
    events = []
    for a in areas:
        data = AreaUpsertedV1.model_validate(a, from_attributes=True)
        events.append(
            (
                Topic.REGISTRY_EVENTS,
                a.area_code,
                Envelope.new(data.TYPE, EVENT_SOURCE, data, subject=a.area_code),
            )
        )
    await enqueue_many(session, OUTBOX, events)
