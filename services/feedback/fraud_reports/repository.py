"""Every query of crime reports and their matches to warnings."""

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback.fraud_reports.models import FraudReport, ReportFeed


async def feed_by_key_hash(session: AsyncSession, key_hash: str) -> ReportFeed | None:
    stmt = select(ReportFeed).where(ReportFeed.key_hash == key_hash, col(ReportFeed.revoked_at).is_(None))
    return (await session.exec(stmt)).first()


async def feed_by_name(session: AsyncSession, name: str) -> ReportFeed | None:
    return (await session.exec(select(ReportFeed).where(ReportFeed.name == name))).first()


async def insert_report(session: AsyncSession, report: FraudReport) -> FraudReport | None:
    """Stores the report; None if the feed already sent one with this external_id."""
    values = report.model_dump()
    stmt = insert(FraudReport).values(**values).on_conflict_do_nothing().returning(col(FraudReport.id))
    inserted = (await session.exec(stmt)).scalar_one_or_none()
    return report if inserted is not None else None


async def by_external_id(session: AsyncSession, feed: str, external_id: str) -> FraudReport | None:
    stmt = select(FraudReport).where(FraudReport.feed == feed, FraudReport.external_id == external_id)
    return (await session.exec(stmt)).first()


# A warning matches a report on the same phone or ID number reported within `window` after the warning.
_MATCH_REPORT = text("""
    WITH matched AS (
        INSERT INTO feedback.post_warning_matches (warning_id, report_id, matched_at)
        SELECT w.warning_id, :report_id, now() FROM feedback.warnings w
         WHERE (w.phone_key = :phone_key OR w.id_key = :id_key)
           AND w.received_at <= :reported_at AND w.received_at >= :reported_at - :window
        ON CONFLICT DO NOTHING
        RETURNING warning_id
    )
    UPDATE feedback.warnings SET matched = true WHERE warning_id IN (SELECT warning_id FROM matched)
""")
_MATCH_WARNINGS = text("""
    WITH matched AS (
        INSERT INTO feedback.post_warning_matches (warning_id, report_id, matched_at)
        SELECT w.warning_id, r.id, now() FROM feedback.warnings w JOIN feedback.fraud_reports r
            ON (r.phone_key = w.phone_key OR r.id_key = w.id_key)
           AND r.reported_at >= w.received_at AND r.reported_at <= w.received_at + :window
         WHERE w.warning_id = ANY(CAST(:warning_ids AS uuid[]))
        ON CONFLICT DO NOTHING
        RETURNING warning_id
    )
    UPDATE feedback.warnings SET matched = true WHERE warning_id IN (SELECT warning_id FROM matched)
""")


async def lock_subject(session: AsyncSession, *keys: str | None) -> None:
    """Serialise a warning and a report of the same person: whichever stores second waits for the first to
    commit and then sees it, so two arriving at once cannot both miss each other. One statement for any number of
    keys, taken in key order (as every caller takes them), so that two takers wait instead of deadlocking."""
    wanted = sorted({k for k in keys if k})
    if wanted:
        await (await session.connection()).execute(_LOCK_SUBJECTS, {"keys": wanted})


# unnest keeps the array's order, and the function scan calls the lock on each key as it yields it
_LOCK_SUBJECTS = text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 7))) FROM unnest(CAST(:keys AS text[])) k"
)


async def match_report(session: AsyncSession, report: FraudReport, window: timedelta) -> int:
    result = await (await session.connection()).execute(
        _MATCH_REPORT.bindparams(
            report_id=report.id,
            phone_key=report.phone_key,
            id_key=report.id_key,
            reported_at=report.reported_at,
            window=window,
        )
    )
    return int(result.rowcount)


async def match_warnings(session: AsyncSession, warning_ids: Sequence[uuid.UUID], window: timedelta) -> int:
    """Matches warnings that arrived after their crime report (the feed is sometimes faster than the warning)."""
    params = {"warning_ids": list(warning_ids), "window": window}
    return int((await (await session.connection()).execute(_MATCH_WARNINGS, params)).rowcount)


async def add_feed(session: AsyncSession, feed: ReportFeed) -> ReportFeed:
    session.add(feed)
    await session.flush()
    return feed
