"""Every query of the case and warning read models. Writes are upserts, so replaying a topic changes nothing."""

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.cases.models import CaseView, WarningView
from shared.events import CaseOpenedV1


async def open_case(session: AsyncSession, event: CaseOpenedV1) -> None:
    values = {
        "case_id": event.case_id, "warning_id": event.warning_id,
        "received_at": event.warning_received_at or event.opened_at, "opened_at": event.opened_at,
        "area_code": event.area_code, "station": event.station, "street": event.street, "source": event.source,
        "fraud_type": event.fraud_type, "risk_level": event.risk_level,
    }  # fmt: skip
    await session.exec(insert(CaseView).values(**values).on_conflict_do_nothing())
    await place_warning(session, event.warning_id, event.case_id)


async def place_warning(session: AsyncSession, warning_id: uuid.UUID, case_id: uuid.UUID) -> None:
    """The warning belongs to the case, and is counted where the case is (dispatch's area, not intake's guess)."""
    await (await session.connection()).execute(
        text("""
        INSERT INTO feedback.warnings (warning_id, case_id, area_code, station)
        SELECT :warning_id, c.case_id, c.area_code, c.station FROM feedback.cases c WHERE c.case_id = :case_id
        ON CONFLICT (warning_id) DO UPDATE
           SET case_id = excluded.case_id, area_code = excluded.area_code, station = excluded.station
        """).bindparams(warning_id=warning_id, case_id=case_id)
    )


async def close_case(session: AsyncSession, case_id: uuid.UUID, closure: str, at: datetime) -> None:
    # The latest closure wins: a corrected outcome re-closes a case with the corrected result.
    await session.exec(update(CaseView).where(col(CaseView.case_id) == case_id).values(closure=closure, closed_at=at))


async def set_team(session: AsyncSession, case_id: uuid.UUID, team_id: uuid.UUID) -> None:
    await session.exec(update(CaseView).where(col(CaseView.case_id) == case_id).values(team_id=team_id))


async def receive_warning(session: AsyncSession, values: dict[str, Any]) -> None:
    stmt = insert(WarningView).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[col(WarningView.warning_id)],
        set_={
            **{k: stmt.excluded[k] for k in values if k not in ("warning_id", "area_code")},
            # dispatch's placement, once known, outranks intake's area
            "area_code": text("CASE WHEN feedback.warnings.case_id IS NULL THEN excluded.area_code "
                              "ELSE feedback.warnings.area_code END"),
        },
    )  # fmt: skip
    await session.exec(stmt)


#: The tables rebuilt from the topics; outcomes, crime reports and feeds are feedback's own records and stay.
READ_MODEL_TABLES = ("cases", "tasks", "warnings", "post_warning_matches", "areas")


async def clear_read_model(session: AsyncSession, inbox: sa.Table, groups: list[str]) -> None:
    conn = await session.connection()
    for table in READ_MODEL_TABLES:
        await conn.execute(text(f"DELETE FROM feedback.{table}"))
    # Forget which events were handled, or the replay would skip them all as redeliveries.
    await conn.execute(sa.delete(inbox).where(inbox.c.consumer.in_(groups)))
