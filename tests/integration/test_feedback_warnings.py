"""Feedback takes a poll's `warning.received` events together (`cases.handlers.warnings_handler`): that must have
the effect of taking them one by one, as a rebuild or a poll of one does: the same read-model rows, the same
crime-report matches. Run on the handler directly, in a private database, on twin sets of warnings and reports."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.feedback.cases.handlers import warnings_handler
from services.feedback.fraud_reports import service as reports
from services.feedback.fraud_reports.models import FraudReportCreate
from shared.db import SessionFactory, make_engine, make_session_factory, unit_of_work
from shared.events import Envelope, SubjectData, WarningReceivedV1
from shared.scope import app_role, system_settings
from tests.conftest import migrated_database
from tests.factories import mobile, valid_id_number
from tests.integration.test_deadline_batches import Statements

SECRET = "test-subject-key-secret-of-32-chars!"
WINDOW = timedelta(days=30)


@pytest.fixture(scope="module")
async def engine(pg_admin_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_database(pg_admin_url, f"quanzu_feedback_warnings_{os.getpid()}") as url:
        engine = make_engine(url, role=app_role("feedback"))
        yield engine
        await engine.dispose()


def _warning(now: datetime, **subject: str) -> WarningReceivedV1:
    return WarningReceivedV1(
        warning_id=uuid.uuid4(), source="demo-bank", external_id=f"W-{uuid.uuid4().hex}",
        issued_at=now - timedelta(minutes=1), received_at=now, subject=SubjectData(**subject),
        subject_key=uuid.uuid4().hex, area_code="370202-031", assigned=True, fraud_type="investment",
        risk_level="high", in_progress=False, amount_at_risk=None, evidence={},
    )  # fmt: skip


async def scenario(factory: SessionFactory, now: datetime) -> list[Envelope]:
    """A poll: a warning whose phone a crime report already names, one whose ID number one does, one no report
    names, the first again (redelivered under another event id), and an event of another type. The reports come
    first, as a feed faster than the warning sends them."""
    by_phone, by_id = mobile(), valid_id_number()
    named, id_only, unnamed = (
        _warning(now, phone=by_phone),
        _warning(now, id_number=by_id),
        _warning(now, phone=mobile()),
    )
    later = (now + timedelta(hours=1)).isoformat()
    async with unit_of_work(factory, system_settings()) as session:
        for n, subject in enumerate(({"phone": by_phone}, {"id_number": by_id})):
            report = FraudReportCreate.model_validate(
                {"external_id": f"R-{uuid.uuid4().hex}-{n}", "reported_at": later, "subject": subject}
            )
            await reports.receive(session, "test-feed", report, secret=SECRET, window=WINDOW)
    events = [Envelope.new(WarningReceivedV1.TYPE, "intake", w) for w in (named, id_only, unnamed, named)]
    other = Envelope.model_validate({**events[0].model_dump(), "id": uuid.uuid4(), "type": "warning.other"})
    return [*events, other]


async def what_happened(factory: SessionFactory, events: list[Envelope]) -> list[tuple[Any, ...]]:
    """Each warning's row and matches, without its ids and keys (whether it has them, instead)."""
    ids = [uuid.UUID(str(e.data["warning_id"])) for e in events if e.type == WarningReceivedV1.TYPE]
    async with unit_of_work(factory, system_settings()) as session:
        conn = await session.connection()
        rows = await conn.execute(
            sa.text(
                "SELECT w.warning_id, w.phone_key IS NOT NULL, w.id_key IS NOT NULL, w.matched, w.source, w.fraud_type,"
                " w.area_code, (SELECT count(*) FROM feedback.post_warning_matches m WHERE m.warning_id = w.warning_id)"
                " FROM feedback.warnings w WHERE w.warning_id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        found = {r[0]: tuple(r[1:]) for r in rows}
    return [found.get(i, ()) for i in ids]


async def test_warnings_taken_together_have_the_effect_of_taking_them_one_by_one(engine: AsyncEngine) -> None:
    factory = make_session_factory(engine)
    async with unit_of_work(factory, system_settings()) as session:
        await reports.add_feed(session, "test-feed")
    now = datetime.now(UTC)
    together, alone = await scenario(factory, now), await scenario(factory, now)
    handle = warnings_handler(SECRET, WINDOW)
    statements = Statements(engine)

    async with unit_of_work(factory, system_settings()) as session:
        await handle(session, together)
    batched = statements.count
    for event in alone:
        async with unit_of_work(factory, system_settings()) as session:
            await handle(session, [event])
    one_by_one = statements.count - batched

    got = await what_happened(factory, together)
    assert got == await what_happened(factory, alone)
    matched = [(has_phone, has_id, flag, matches) for has_phone, has_id, flag, _, _, _, matches in got]
    assert matched == [(True, False, True, 1), (False, True, True, 1), (True, False, False, 0), (True, False, True, 1)]
    assert batched * 2 < one_by_one, (batched, one_by_one)
