"""Accepting warnings: de-duplicate, store, and enqueue `warning.received` in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.db import ACCESS_LOG
from services.intake.sources.models import SourceIdentity
from services.intake.warnings import repository
from services.intake.warnings.models import WarningCreate, WarningPublic
from services.intake.warnings.policy import Verdict, canonical, digest, replay_verdict
from shared import access_log
from shared.auth import Principal
from shared.events import WarningReceivedV1, envelope_json
from shared.personal import mask_subject, subject_key
from shared.scope import source_settings

EVENT_SOURCE = "quanzu/intake"


@dataclass(frozen=True)
class Accepted:
    verdict: Verdict
    id: uuid.UUID
    assigned: bool


async def accept(
    pool: asyncpg.Pool[asyncpg.Record],
    source: str,
    records: list[WarningCreate],
    *,
    known_areas: Container[str],
    subject_secret: str,
) -> list[Accepted]:
    """Store the new records and their events, committed when this returns (one statement, its own transaction:
    the hot path of every post, kept off the ORM's session).

    Results are in the order of `records`. A record whose (source, external_id) is already stored is a
    duplicate if its normalised content is the same, else a conflict; within one batch the first
    occurrence of an external_id wins and later ones are judged against it.
    """
    now = datetime.now(UTC)
    forms = [canonical(r) for r in records]
    hashes = [digest(f) for f in forms]
    first: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        if record.external_id in first:
            continue
        first[record.external_id] = i
        rows.append(
            _row(
                record, forms[i], source=source, hashed=hashes[i], now=now, known_areas=known_areas,
                secret=subject_secret,
            )
        )  # fmt: skip

    # The events are built before the insert says which rows are new (a replayed record's event is dropped by it):
    # one statement stores the records and their events, and duplicates are rare.
    stored = await repository.store(pool, source_settings(source), source, rows, [_event(row) for row in rows])
    existing = stored.existing
    fresh = {r["external_id"]: r for r in rows if r["id"] in stored.inserted}

    results: list[Accepted] = []
    for i, record in enumerate(records):
        ext = record.external_id
        if ext in fresh:
            row = fresh[ext]
            if first[ext] == i:
                results.append(Accepted(Verdict.ACCEPTED, row["id"], row["assigned"]))
            else:
                results.append(Accepted(replay_verdict(row["content_hash"], hashes[i]), row["id"], row["assigned"]))
        else:
            stored_id, stored_hash, assigned = existing[ext]
            results.append(Accepted(replay_verdict(stored_hash, hashes[i]), stored_id, assigned))
    return results


def _row(
    record: WarningCreate,
    form: dict[str, Any],
    *,
    source: str,
    hashed: str,
    now: datetime,
    known_areas: Container[str],
    secret: str,
) -> dict[str, Any]:
    subject = record.subject
    return {
        "id": uuid.uuid4(),
        "source": source,
        "external_id": record.external_id,
        "content_hash": hashed,
        "received_at": now,
        "issued_at": record.issued_at,
        "area_code": record.area_code,
        "assigned": record.area_code is not None and record.area_code in known_areas,
        "fraud_type": record.fraud_type,
        "risk_level": record.risk_level,
        "in_progress": record.in_progress,
        "amount_at_risk": record.amount_at_risk,
        "subject_key": subject_key(secret, phone=subject.phone, id_number=subject.id_number),
        "subject": form["subject"],
        "evidence": form["evidence"],
    }


#: `warning.received`'s fields (WarningReceivedV1) as a stored row holds them, but for its id
_EVENT_FIELDS = ("source", "external_id", "issued_at", "received_at", "subject", "subject_key", "area_code", "assigned",
                 "fraud_type", "risk_level", "in_progress", "amount_at_risk", "evidence")  # fmt: skip


def _event(row: dict[str, Any]) -> tuple[uuid.UUID, bytes]:
    """The row's `warning.received` (WarningReceivedV1) as an envelope's id and bytes. The row's values are the
    validated record's own (its subject and evidence as JSON already), so the payload is not validated again."""
    data = {"warning_id": row["id"], **{f: row[f] for f in _EVENT_FIELDS}}
    return envelope_json(WarningReceivedV1.TYPE, EVENT_SOURCE, data, subject=str(row["id"]))


PERSONAL_FIELDS = ("phone", "name", "id_number", "address")


async def read(
    session: AsyncSession, warning_id: uuid.UUID, caller: SourceIdentity | Principal, *, reason: str | None
) -> WarningPublic | None:
    """The warning if the caller's scope holds it (row-level security decides), masked unless an admin reads it;
    an admin's read of full personal fields is written to the access log first."""
    warning = await repository.get(session, warning_id)
    if warning is None:
        return None
    subject = warning.subject
    if isinstance(caller, Principal) and caller.is_admin:
        fields = [f for f in PERSONAL_FIELDS if subject.get(f)]
        if fields:
            await access_log.record(
                session,
                ACCESS_LOG,
                caller,
                object_type="warning",
                object_id=warning.id,
                fields=fields,
                reason=reason or "admin read of a warning",
            )
    else:
        subject = mask_subject(subject)
    return WarningPublic.model_validate({**warning.model_dump(), "subject": subject})


async def erase_personal_data(session: AsyncSession, older_than_days: int) -> int:
    """Erase the subject of every warning received more than `older_than_days` ago; counts stay computable."""
    return await repository.erase_subjects(session, older_than_days)
