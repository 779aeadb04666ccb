"""Keeps the case and task read models from dispatch.events, and the warning read model from warnings.received.

Both handlers are idempotent (upserts, first-write-wins timestamps), so either topic can be replayed from its
start to rebuild the read model.
"""

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.areas.handlers import GROUP as REGISTRY_GROUP
from services.feedback.areas.handlers import on_registry_event
from services.feedback.cases import repository as cases
from services.feedback.fraud_reports import repository as reports
from services.feedback.tasks import repository as tasks
from shared.events import (
    CaseClosedV1,
    CaseJoinedV1,
    CaseOpenedV1,
    Envelope,
    SlaBreachedV1,
    SmsSentV1,
    TaskAssignedV1,
    TaskCreatedV1,
    Topic,
    WarningReceivedV1,
)
from shared.inbox import SessionBatchHandler, each
from shared.personal import subject_key

DISPATCH_GROUP = "feedback-dispatch-events"
WARNINGS_GROUP = "feedback-warnings"
VISIT_TIERS = ("visit", "follow_up")


async def on_dispatch_event(session: AsyncSession, envelope: Envelope) -> None:
    if envelope.type == CaseOpenedV1.TYPE:
        await cases.open_case(session, CaseOpenedV1.model_validate(envelope.data))
    elif envelope.type == CaseJoinedV1.TYPE:
        joined = CaseJoinedV1.model_validate(envelope.data)
        await cases.place_warning(session, joined.warning_id, joined.case_id)
    elif envelope.type == CaseClosedV1.TYPE:
        closed = CaseClosedV1.model_validate(envelope.data)
        await cases.close_case(session, closed.case_id, closed.closure, closed.at)
    elif envelope.type == TaskCreatedV1.TYPE:
        created = TaskCreatedV1.model_validate(envelope.data)
        await tasks.add(session, created)
        if created.tier in VISIT_TIERS and created.team_id is not None:
            await cases.set_team(session, created.case_id, created.team_id)
    elif envelope.type == TaskAssignedV1.TYPE:
        assigned = TaskAssignedV1.model_validate(envelope.data)
        tier = await tasks.assign(session, assigned.task_id, assigned.team_id)
        if tier in VISIT_TIERS and assigned.team_id is not None:
            await cases.set_team(session, assigned.case_id, assigned.team_id)
    elif envelope.type == SmsSentV1.TYPE:
        sent = SmsSentV1.model_validate(envelope.data)
        if sent.accepted:
            await tasks.sms_accepted(session, sent.task_id, sent.at)
            await cases.sms_accepted(session, sent.case_id, sent.at)
    elif envelope.type == SlaBreachedV1.TYPE:
        breach = SlaBreachedV1.model_validate(envelope.data)
        if breach.kind == "due" and breach.task_id is not None:
            await tasks.breached(session, breach.task_id, breach.at)


def warnings_handler(secret: str, window: timedelta) -> SessionBatchHandler:
    """The handler of warnings.received, for a poll's warnings at once: keeps keyed hashes of each subject's phone
    and ID number (never the numbers) and matches the warnings against crime reports that arrived before them.
    A warning's row and matches depend on no other warning, so taking them together (three statements for the
    poll) has the effect of taking them one by one (three statements each)."""

    async def on_warnings(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        rows: dict[uuid.UUID, dict[str, Any]] = {}  # by warning: the same warning twice is one row, the last
        for envelope in envelopes:
            if envelope.type != WarningReceivedV1.TYPE:
                continue
            warning = WarningReceivedV1.model_validate(envelope.data)
            phone, id_number = warning.subject.phone, warning.subject.id_number
            rows[warning.warning_id] = {
                "warning_id": warning.warning_id, "received_at": warning.received_at,
                "subject_key": warning.subject_key,
                "phone_key": subject_key(secret, phone=phone, id_number=None) if phone else None,
                "id_key": subject_key(secret, phone=None, id_number=id_number) if id_number else None,
                "source": warning.source, "fraud_type": warning.fraud_type, "area_code": warning.area_code,
            }  # fmt: skip
        if not rows:
            return
        await reports.lock_subject(session, *(row[k] for row in rows.values() for k in ("phone_key", "id_key")))
        await cases.receive_warnings(session, list(rows.values()))
        await reports.match_warnings(session, list(rows), window)

    return on_warnings


def read_model_consumers(secret: str, window: timedelta) -> list[tuple[str, Topic, SessionBatchHandler]]:
    """(consumer group, topic, handler) of every consumer that builds feedback's read model, in the order
    a rebuild replays them (areas, then cases and tasks, then warnings)."""
    return [
        (REGISTRY_GROUP, Topic.REGISTRY_EVENTS, each(on_registry_event)),
        (DISPATCH_GROUP, Topic.DISPATCH_EVENTS, each(on_dispatch_event)),
        (WARNINGS_GROUP, Topic.WARNINGS_RECEIVED, warnings_handler(secret, window)),
    ]
