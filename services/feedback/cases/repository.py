"""Every query of the case and warning read models. Writes are upserts, so replaying a topic changes nothing."""

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.cases.models import WarningView
from shared.events import CaseOpenedV1

# The event handlers' writes are prepared `text` statements run on the connection with plain parameters: building
# an ORM insert or update per event (its values' cache key, its ORM bookkeeping) cost more than the statement.
_OPEN_CASE = text("""
    WITH opened AS (
        INSERT INTO feedback.cases
               (case_id, warning_id, received_at, opened_at, area_code, station, street, source, fraud_type,
                risk_level)
        VALUES (:case_id, :warning_id, :received_at, :opened_at, :area_code, :station, :street, :source,
                :fraud_type, :risk_level)
        ON CONFLICT DO NOTHING
        RETURNING case_id, area_code, station
    ), the_case AS (  -- this statement does not see its own insert: the case is the new row or the one there was
        SELECT case_id, area_code, station FROM opened
        UNION ALL SELECT case_id, area_code, station FROM feedback.cases WHERE case_id = :case_id
        LIMIT 1
    )
    INSERT INTO feedback.warnings (warning_id, case_id, area_code, station)
    SELECT :warning_id, case_id, area_code, station FROM the_case
    ON CONFLICT (warning_id) DO UPDATE
       SET case_id = excluded.case_id, area_code = excluded.area_code, station = excluded.station
""")
_PLACE_WARNING = text("""
    INSERT INTO feedback.warnings (warning_id, case_id, area_code, station)
    SELECT :warning_id, c.case_id, c.area_code, c.station FROM feedback.cases c WHERE c.case_id = :case_id
    ON CONFLICT (warning_id) DO UPDATE
       SET case_id = excluded.case_id, area_code = excluded.area_code, station = excluded.station
""")
# The latest closure wins: a corrected outcome re-closes a case with the corrected result.
_CLOSE_CASE = text("UPDATE feedback.cases SET closure = :closure, closed_at = :at WHERE case_id = :case_id")
_SET_TEAM = text("UPDATE feedback.cases SET team_id = :team_id WHERE case_id = :case_id")
_SMS_ACCEPTED = text("""
    UPDATE feedback.cases SET first_sms_at = least(coalesce(first_sms_at, :at), :at) WHERE case_id = :case_id
""")


async def open_case(session: AsyncSession, event: CaseOpenedV1) -> None:
    """The case, and its first warning placed in it, in one statement; then its summary, if outcomes came first."""
    values = {
        "case_id": event.case_id, "warning_id": event.warning_id,
        "received_at": event.warning_received_at or event.opened_at, "opened_at": event.opened_at,
        "area_code": event.area_code, "station": event.station, "street": event.street, "source": event.source,
        "fraud_type": event.fraud_type, "risk_level": event.risk_level,
    }  # fmt: skip
    conn = await session.connection()
    await conn.execute(_OPEN_CASE, values)
    await refresh_summary(session, event.case_id, only_with_outcomes=True)  # on a rebuild, the outcomes are there


async def place_warning(session: AsyncSession, warning_id: uuid.UUID, case_id: uuid.UUID) -> None:
    """The warning belongs to the case, and is counted where the case is (dispatch's area, not intake's guess)."""
    await (await session.connection()).execute(_PLACE_WARNING, {"warning_id": warning_id, "case_id": case_id})


async def close_case(session: AsyncSession, case_id: uuid.UUID, closure: str, at: datetime) -> None:
    await (await session.connection()).execute(_CLOSE_CASE, {"case_id": case_id, "closure": closure, "at": at})


async def set_team(session: AsyncSession, case_id: uuid.UUID, team_id: uuid.UUID) -> None:
    await (await session.connection()).execute(_SET_TEAM, {"case_id": case_id, "team_id": team_id})


#: The columns of a received warning, always the same: its upsert is built once, not for each warning (building it,
#: with its `excluded` mapping, was a tenth of feedback's time on a stream of warnings).
WARNING_COLUMNS = frozenset(
    {"warning_id", "received_at", "subject_key", "phone_key", "id_key", "source", "fraud_type", "area_code"}
)
_UPSERT = insert(WarningView)
_RECEIVE_WARNING = _UPSERT.on_conflict_do_update(
    index_elements=[col(WarningView.warning_id)],
    set_={
        **{k: _UPSERT.excluded[k] for k in sorted(WARNING_COLUMNS - {"warning_id", "area_code"})},
        # dispatch's placement, once known, outranks intake's area
        "area_code": text("CASE WHEN feedback.warnings.case_id IS NULL THEN excluded.area_code "
                          "ELSE feedback.warnings.area_code END"),
    },
)  # fmt: skip


async def receive_warnings(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Upsert received warnings, one row each (a statement cannot update one row twice)."""
    for values in rows:
        if values.keys() != WARNING_COLUMNS:
            raise ValueError(f"a received warning has the columns {sorted(WARNING_COLUMNS)}, not {sorted(values)}")
    if rows:
        await (await session.connection()).execute(_RECEIVE_WARNING, rows)


#: The tables rebuilt from the topics; outcomes, crime reports and feeds are feedback's own records and stay.
READ_MODEL_TABLES = ("cases", "tasks", "warnings", "post_warning_matches", "areas")


async def clear_read_model(session: AsyncSession, inbox: sa.Table, groups: list[str]) -> None:
    conn = await session.connection()
    for table in READ_MODEL_TABLES:
        await conn.execute(text(f"DELETE FROM feedback.{table}"))
    # Forget which events were handled, or the replay would skip them all as redeliveries.
    await conn.execute(sa.delete(inbox).where(inbox.c.consumer.in_(groups)))


# A case's summary: its current outcomes, summed. One definition for the recount of one case and of all.
_SUMMARY = """
    UPDATE feedback.cases c
       SET calls = s.calls, connected_calls = s.connected_calls, visits = s.visits, visits_met = s.visits_met,
           visits_judged = s.visits_judged, visits_dissuaded = s.visits_dissuaded,
           visits_checked = s.visits_checked, visits_app_installed = s.visits_app_installed,
           first_call_at = s.first_call_at, first_visit_at = s.first_visit_at
      FROM (
        SELECT case_id,
               count(*) FILTER (WHERE kind = 'call') AS calls,
               count(*) FILTER (WHERE kind = 'call' AND call_result = 'connected') AS connected_calls,
               count(*) FILTER (WHERE kind = 'visit') AS visits,
               count(*) FILTER (WHERE kind = 'visit' AND dissuasion_result <> 'not_met') AS visits_met,
               count(*) FILTER (WHERE kind = 'visit' AND dissuasion_result <> 'false_positive') AS visits_judged,
               count(*) FILTER (WHERE kind = 'visit' AND dissuasion_result = 'dissuaded') AS visits_dissuaded,
               -- an outcome without a checklist holds JSON null (not SQL NULL): only an object is a checklist
               count(*) FILTER (WHERE kind = 'visit' AND jsonb_typeof(checklist) = 'object') AS visits_checked,
               count(*) FILTER (WHERE kind = 'visit' AND (checklist ->> 'antifraud_app_installed')::boolean)
                   AS visits_app_installed,
               min(recorded_at) FILTER (WHERE kind = 'call' AND call_result = 'connected') AS first_call_at,
               min(recorded_at) FILTER (WHERE kind = 'visit' AND dissuasion_result <> 'not_met') AS first_visit_at
          FROM feedback.outcomes
         WHERE superseded_by IS NULL {only}
         GROUP BY case_id
      ) s
     WHERE c.case_id = s.case_id
"""
_REFRESH_SUMMARY = text(_SUMMARY.format(only="AND case_id = :case_id"))
_LOCK_CASE = text("SELECT 1 FROM feedback.cases WHERE case_id = :case_id FOR UPDATE")
_LOCK_CASE_WITH_OUTCOMES = text("""
    SELECT 1 FROM feedback.cases WHERE case_id = :case_id
       AND EXISTS (SELECT 1 FROM feedback.outcomes WHERE case_id = :case_id) FOR UPDATE
""")


async def refresh_summary(session: AsyncSession, case_id: uuid.UUID, *, only_with_outcomes: bool = False) -> None:
    """Recount a case's current outcomes into its row (after an outcome, a correction, or the case's arrival);
    `only_with_outcomes`: not at all if it has none (a case arriving before any outcome, as it usually does, has
    nothing to recount).

    The row lock comes first, in its own statement: two outcomes of one case recorded at once then recount one
    after the other, the second seeing the first's committed outcome, instead of each overwriting the other's.
    """
    conn = await session.connection()
    params = {"case_id": case_id}
    locked = await conn.execute(_LOCK_CASE_WITH_OUTCOMES if only_with_outcomes else _LOCK_CASE, params)
    if only_with_outcomes and locked.first() is None:
        return
    await conn.execute(_REFRESH_SUMMARY, params)


async def sms_accepted(session: AsyncSession, case_id: uuid.UUID, at: datetime) -> None:
    await (await session.connection()).execute(_SMS_ACCEPTED, {"case_id": case_id, "at": at})


#: Recomputes every summary from the recorded outcomes, reports and SMS receipts, for rows loaded in bulk
#: (the benchmark; a migration keeps its own frozen copy). Runs as the owner, not through row-level security.
BACKFILL_SUMMARIES: tuple[str, ...] = (
    _SUMMARY.format(only=""),
    """
        UPDATE feedback.cases c SET first_sms_at = s.first FROM (
            SELECT case_id, min(sms_at) AS first FROM feedback.tasks WHERE sms_at IS NOT NULL GROUP BY case_id
        ) s WHERE c.case_id = s.case_id
    """,
    """
        UPDATE feedback.tasks t SET completed_at = least(t.sms_at, o.first) FROM (
            SELECT task_id, min(recorded_at) AS first FROM feedback.outcomes GROUP BY task_id
        ) o WHERE t.task_id = o.task_id
    """,
    "UPDATE feedback.tasks SET completed_at = sms_at WHERE completed_at IS NULL AND sms_at IS NOT NULL",
    """
        UPDATE feedback.warnings w SET matched = true
         WHERE EXISTS (SELECT 1 FROM feedback.post_warning_matches m WHERE m.warning_id = w.warning_id)
    """,
)
