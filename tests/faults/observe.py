"""Reading the system back: the superuser's view of its database (row-level security does not apply) and the
SMS gateway's record. Queries only; what must hold is decided in `checks.py`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from shared.db import asyncpg_dsn
from tests.faults import chaos
from tests.faults.checks import Deadline, Event, Message, Snapshot, Task

CHECKED_EVENTS = ("task.created", "case.closed", "sms.sent", "sla.breached")


class Database:
    """A small pool on the system's database that survives its restarts (each query may fail while it is down)."""

    def __init__(self, url: str) -> None:
        self.dsn = asyncpg_dsn(url)
        self.pool: Any = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=3, timeout=5)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self.pool.fetch(sql, *args, timeout=30)
        return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchval(sql, *args, timeout=30)


@dataclass(frozen=True)
class Backlog:
    """What is still to do of the work that existed at some moment; all zero when the system has caught up."""

    without_case: int  # acknowledged warnings dispatch has no case for
    overdue_deadlines: int  # deadlines due by then and not fired yet
    tasks_unseen: int  # dispatch's tasks created by then that feedback's read model lacks
    outcomes_unapplied: int  # outcomes recorded by then whose task dispatch still has open

    @property
    def clear(self) -> bool:
        return not (self.without_case or self.overdue_deadlines or self.tasks_unseen or self.outcomes_unapplied)


async def backlog(db: Database, acked: list[str], moment: datetime) -> Backlog:
    row = (
        await db.fetch(
            """SELECT
                 $3::int - (SELECT count(DISTINCT warning_id) FROM dispatch.case_warnings
                             WHERE warning_id = ANY($1::uuid[])) AS without_case,
                 (SELECT count(*) FROM dispatch.deadlines WHERE fired_at IS NULL AND due_at <= $2) AS overdue,
                 (SELECT count(*) FROM dispatch.tasks t WHERE t.created_at <= $2
                     AND NOT EXISTS (SELECT 1 FROM feedback.tasks f WHERE f.task_id = t.id)) AS unseen,
                 (SELECT count(*) FROM feedback.outcomes o JOIN dispatch.tasks t ON t.id = o.task_id
                   WHERE o.created_at <= $2 AND t.status IN ('open', 'acked')) AS unapplied""",
            acked,
            moment,
            len(acked),
        )
    )[0]
    return Backlog(row["without_case"], row["overdue"], row["unseen"], row["unapplied"])


async def open_cases(db: Database, acked: list[str]) -> int:
    """Cases of these warnings not closed yet, in dispatch or in feedback's read model."""
    count: int = await db.fetchval(
        """SELECT count(*) FROM dispatch.case_warnings cw
             JOIN dispatch.cases c ON c.id = cw.case_id
             LEFT JOIN feedback.cases f ON f.case_id = c.id
            WHERE cw.warning_id = ANY($1::uuid[]) AND (c.state <> 'closed' OR f.closure IS NULL)""",
        acked,
    )
    return count


async def describe_open_cases(db: Database, acked: list[str]) -> list[str]:
    """The cases of these warnings not closed yet: where they are and what they wait for (ids, no personal data)."""
    rows = await db.fetch(
        """SELECT c.id, c.state, cw.warning_id, f.closure AS feedback_closure,
                  (SELECT string_agg(t.tier || '#' || t.attempt || ':' || t.status || ' ' || t.id, ', ')
                     FROM dispatch.tasks t WHERE t.case_id = c.id AND t.status IN ('open', 'acked')) AS open_tasks
             FROM dispatch.case_warnings cw JOIN dispatch.cases c ON c.id = cw.case_id
             LEFT JOIN feedback.cases f ON f.case_id = c.id
            WHERE cw.warning_id = ANY($1::uuid[]) AND (c.state <> 'closed' OR f.closure IS NULL)""",
        acked,
    )
    return [
        f"case {r['id']} (warning {r['warning_id']}) is {r['state']} in dispatch, closure in feedback "
        f"{r['feedback_closure']}; open tasks: {r['open_tasks'] or 'none'}"
        for r in rows
    ]


async def phantom_effects(db: Database) -> list[str]:
    """What poison of a future schema version would leave behind had a consumer taken it for version 1."""
    checks = {
        "intake's copy of the registry": ("SELECT count(*) FROM intake.areas WHERE area_code = $1", chaos.PHANTOM_AREA),
        "feedback's copy of the registry": (
            "SELECT count(*) FROM feedback.areas WHERE area_code = $1",
            chaos.PHANTOM_AREA,
        ),
        "feedback's warnings": ("SELECT count(*) FROM feedback.warnings WHERE source = $1", "fault-phantom"),
        "feedback's cases": ("SELECT count(*) FROM feedback.cases WHERE source = $1", "fault-phantom"),
        "dispatch's cases": (
            "SELECT count(*) FROM dispatch.cases WHERE source = $1",
            "fault-phantom",
        ),
    }
    found = []
    for where, (sql, arg) in checks.items():
        count = await db.fetchval(sql, arg)
        if count:
            found.append(f"{count} phantom row(s) in {where}")
    return found


async def snapshot(db: Database, messages: Iterable[Message], now: datetime) -> Snapshot:
    snap = Snapshot(now=now, messages=list(messages))
    for r in await db.fetch("SELECT id, source, external_id FROM intake.warnings"):
        snap.stored[str(r["id"])] = (r["source"], r["external_id"])
    for r in await db.fetch("SELECT warning_id, case_id FROM dispatch.case_warnings"):
        snap.case_of.setdefault(str(r["warning_id"]), []).append(str(r["case_id"]))
    for r in await db.fetch("SELECT id, state, closure, subject->>'phone' AS phone FROM dispatch.cases"):
        snap.cases[str(r["id"])] = (r["state"], r["closure"])
        if r["phone"]:
            snap.case_phone[str(r["id"])] = r["phone"]
    for r in await db.fetch("SELECT id, case_id, tier, attempt, status, result FROM dispatch.tasks"):
        result = (json.loads(r["result"]) if r["result"] else None) or {}  # JSON null for tasks done without one
        snap.tasks.append(
            Task(str(r["id"]), str(r["case_id"]), r["tier"], r["attempt"], r["status"], bool(result.get("accepted")))
        )
    for r in await db.fetch("SELECT id, kind, ref, due_at, fired_at FROM dispatch.deadlines"):
        snap.deadlines.append(Deadline(r["id"], r["kind"], str(r["ref"]), r["due_at"], r["fired_at"]))
    rows = await db.fetch("SELECT event_type, value FROM dispatch.outbox WHERE event_type = ANY($1)", CHECKED_EVENTS)
    snap.events = [Event(r["event_type"], json.loads(r["value"])["data"]) for r in rows]
    snap.outcomes = Counter(str(r["task_id"]) for r in await db.fetch("SELECT task_id FROM feedback.outcomes"))
    return snap


class GatewayRecord:
    """Everything the SMS gateway recorded. Its list answers the newest 1,000 messages only, so it is read often
    enough during the run that every read overlaps the one before."""

    PAGE = 1000

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.messages: dict[str, Message] = {}
        self.gaps = 0  # reads that shared nothing with what was known: messages may have been missed

    async def read(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{self.url}/v1/messages", params={"limit": self.PAGE})
        response.raise_for_status()
        items = response.json()["items"]
        if len(items) == self.PAGE and self.messages and not any(i["id"] in self.messages for i in items):
            self.gaps += 1
        for item in items:
            self.messages[item["id"]] = Message(item["id"], item["to"], item["idempotency_key"])

    async def control(self, client: httpx.AsyncClient, **settings: Any) -> dict[str, Any]:
        response = await client.post(f"{self.url}/v1/control", json=settings)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    async def counters(self, client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get(f"{self.url}/v1/control")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state
