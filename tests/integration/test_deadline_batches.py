"""Dispatch's escalation engine fires a round's deadlines together (`service.on_deadlines`). That must have the
effect of firing them one by one (`service.on_deadlines` on each alone), in the same order; so must the SMS senders'
batches (`service.send_sms_together` against `service.send_sms`): the same tasks, transitions, events,
notifications and deadlines, case by case.

Both ways run here on twin sets of cases, in a private database with the demo district and no dispatch running on
it, so that nothing but the test fires their deadlines. The deadlines fired are every pending one of the cases
(the SMS's and the call's, due and acknowledgement, and the unassigned queue's), so that a batch meets some cases
more than once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli import admin
from services.dispatch.cases import service
from services.dispatch.notify.service import RecordingNotifier
from services.dispatch.sms.provider import HttpSmsProvider
from shared.db import SessionFactory, make_engine, make_session_factory, unit_of_work, write_behind
from shared.devinfra import Broker
from shared.events import SubjectData, WarningReceivedV1
from shared.scope import app_role, system_settings
from shared.settings import CommonSettings
from shared.timers import Due
from tests.conftest import _settings, migrated_database
from tests.factories import mobile

AREA = "370202-031"
CASES = 12  # with an area; and two without, in the district's unassigned queue
NOTIFIER = RecordingNotifier()


@pytest.fixture(scope="module")
async def engine(pg_admin_url: str, broker: Broker) -> AsyncIterator[AsyncEngine]:
    async with migrated_database(pg_admin_url, f"quanzu_batches_{os.getpid()}") as url:
        settings: CommonSettings = _settings(CommonSettings, url, broker)
        await admin.demo(settings)
        engine = make_engine(url, role=app_role("dispatch"))
        yield engine
        await engine.dispose()


def _warning(area_code: str | None, now: datetime) -> WarningReceivedV1:
    return WarningReceivedV1(
        warning_id=uuid.uuid4(), source="demo-bank", external_id=f"W-{uuid.uuid4().hex}",
        issued_at=now - timedelta(minutes=1), received_at=now,
        subject=SubjectData(phone=mobile(), name="测试"), subject_key=uuid.uuid4().hex,
        area_code=area_code, assigned=area_code is not None, fraud_type="investment", risk_level="high",
        in_progress=False, amount_at_risk=None, evidence={},
    )  # fmt: skip


async def open_cases(factory: SessionFactory, now: datetime) -> list[uuid.UUID]:
    warnings = [_warning(AREA, now) for _ in range(CASES)] + [_warning(None, now) for _ in range(2)]
    async with unit_of_work(factory, system_settings()) as session:
        for warning in warnings:
            await service.on_warning(session, warning, NOTIFIER, now)
        await session.flush()
        conn = await session.connection()
        rows = await conn.execute(
            sa.text("SELECT case_id FROM dispatch.case_warnings WHERE warning_id = ANY(:ids)"),
            {"ids": [w.warning_id for w in warnings]},
        )
        found = {r.case_id for r in rows}
    assert len(found) == len(warnings)  # one case each: no warning joined another's
    return await _in_opening_order(factory, found)


async def _in_opening_order(factory: SessionFactory, case_ids: set[uuid.UUID]) -> list[uuid.UUID]:
    async with unit_of_work(factory, system_settings()) as session:
        conn = await session.connection()
        rows = await conn.execute(
            sa.text("SELECT id FROM dispatch.cases WHERE id = ANY(:ids) ORDER BY area_code NULLS LAST, id"),
            {"ids": list(case_ids)},
        )
        return [r.id for r in rows]


async def pending(factory: SessionFactory, case_ids: Sequence[uuid.UUID], *, sms: bool = False) -> list[Due]:
    """The pending deadlines of the cases and their tasks, in due order (as the engines claim them): the SMS sends,
    or every other one."""
    async with unit_of_work(factory, system_settings()) as session:
        conn = await session.connection()
        rows = await conn.execute(
            sa.text(
                "SELECT d.id, d.kind, d.ref, d.due_at, d.attempts FROM dispatch.deadlines d"
                " WHERE d.fired_at IS NULL AND (d.kind = 'sms.send') = :sms AND (d.ref = ANY(:ids)"
                "  OR d.ref IN (SELECT id FROM dispatch.tasks WHERE case_id = ANY(:ids)))"
                " ORDER BY d.due_at, d.id"
            ),
            {"ids": list(case_ids), "sms": sms},
        )
        return [Due(r.id, r.kind, r.ref, r.due_at, r.attempts) for r in rows]


async def what_happened(factory: SessionFactory, case_id: uuid.UUID) -> dict[str, Any]:
    """A case's state, tasks, transitions, events, notifications and pending deadlines, without ids or times."""
    async with unit_of_work(factory, system_settings()) as session:
        conn = await session.connection()

        async def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in await conn.execute(sa.text(sql), {"case": case_id, "key": str(case_id).encode()})]

        tasks = "SELECT id FROM dispatch.tasks WHERE case_id = :case"
        return {
            "case": await rows("SELECT state, risk_level, area_code, closure FROM dispatch.cases WHERE id = :case"),
            "tasks": await rows(
                "SELECT tier, attempt, status, team_id IS NOT NULL, ack_misses, reason FROM dispatch.tasks"
                " WHERE case_id = :case ORDER BY tier, attempt, created_at"
            ),
            "transitions": await rows(
                "SELECT from_state, to_state, actor, reason FROM dispatch.case_transitions WHERE case_id = :case"
                " ORDER BY at, from_state, to_state"  # the opening's transitions share their time
            ),
            "events": await rows(
                "SELECT event_type, convert_from(value, 'UTF8')::jsonb #>> '{data,tier}',"
                " convert_from(value, 'UTF8')::jsonb #>> '{data,kind}' FROM dispatch.outbox"
                " WHERE key = :key ORDER BY id"
            ),
            "notifications": await rows(
                "SELECT recipient_kind, kind, message FROM dispatch.notifications WHERE case_id = :case"
                " ORDER BY recipient_kind, kind, message"
            ),
            "deadlines": await rows(
                f"SELECT kind, fired_at IS NULL, last_error FROM dispatch.deadlines WHERE ref = :case"
                f" OR ref IN ({tasks}) ORDER BY kind, fired_at IS NULL, last_error"
            ),
        }


class Statements:
    """Counts the statements an engine's connections send, to compare the two ways by."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: object) -> None:
        self.count += 1


async def test_deadlines_fired_together_have_the_effect_of_firing_them_one_by_one(
    engine: AsyncEngine, sms_gateway: str
) -> None:
    factory = make_session_factory(engine)
    now = datetime.now(UTC)
    together, alone = await open_cases(factory, now), await open_cases(factory, now)

    # first the SMS, as the SMS senders send them: handed to the (development) provider together, or one by one
    sms_together, sms_alone = await pending(factory, together, sms=True), await pending(factory, alone, sms=True)
    assert len(sms_together) == len(sms_alone) == len(together)
    async with httpx.AsyncClient() as http:
        provider = HttpSmsProvider(http, sms_gateway, api_key=None, total_deadline_s=10)
        async with unit_of_work(factory, system_settings()) as session, write_behind(session):
            assert await service.send_sms_together(session, sms_together, provider, NOTIFIER, now) == {}
        for due in sms_alone:
            async with unit_of_work(factory, system_settings()) as session, write_behind(session):
                await service.send_sms(session, due, provider, NOTIFIER, now)
    assert [await what_happened(factory, case) for case in together] == [
        await what_happened(factory, case) for case in alone
    ]
    dues_together, dues_alone = await pending(factory, together), await pending(factory, alone)
    kinds = {d.kind for d in dues_together}
    assert kinds == {"task.due", "task.ack", "case.unassigned"}, kinds
    assert len(dues_together) == len(dues_alone) > len(together)  # some cases are met more than once
    later = max(d.due_at for d in dues_together) + timedelta(seconds=1)
    statements = Statements(engine)

    # as the engine fires them: one transaction, what they insert written at the end (or at each deadline's end)
    async with unit_of_work(factory, system_settings()) as session, write_behind(session):
        await service.on_deadlines(session, dues_together, NOTIFIER, later)
    batched = statements.count
    async with unit_of_work(factory, system_settings()) as session:
        for due in dues_alone:
            async with write_behind(session):
                await service.on_deadlines(session, [due], NOTIFIER, later)
    one_by_one = statements.count - batched

    results = [await what_happened(factory, case) for case in together]
    expected = [await what_happened(factory, case) for case in alone]
    for got, want in zip(results, expected, strict=True):
        for key in want:
            assert got[key] == want[key], key
    escalated = [r for r in results if r["case"][0][2] == AREA]
    assert len(escalated) == CASES
    for result in escalated:  # the call fell due unanswered: a breach, and a visit for the area's team
        assert ("visit", 1, "open", True) in [t[:4] for t in result["tasks"]]
        assert ("sla.breached", "call", "due") in result["events"]
        assert ("task.escalated", None, None) in result["events"]
        assert result["case"][0][0] == "visiting"
    assert batched * 3 < one_by_one, (batched, one_by_one)
