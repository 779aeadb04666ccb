"""Storing a crime report and matching it to earlier warnings; registering the feeds that send them."""

import hashlib
from datetime import UTC, datetime, timedelta

import orjson
from sqlmodel.ext.asyncio.session import AsyncSession

from services.feedback import metrics
from services.feedback.fraud_reports import repository
from services.feedback.fraud_reports.models import FraudReport, FraudReportCreate, ReportFeed
from shared.apikeys import KEY_PREFIX_LENGTH, hash_api_key, new_api_key
from shared.personal import normalize_id_number, normalize_phone, subject_key


class InvalidReport(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ReportConflict(Exception):
    """The feed reused an external_id for a different report."""


class FeedError(Exception):
    pass


def _keys(secret: str, data: FraudReportCreate) -> tuple[str | None, str | None]:
    phone_key = id_key = None
    if data.subject.phone:
        try:
            phone_key = subject_key(secret, phone=normalize_phone(data.subject.phone), id_number=None)
        except ValueError as exc:
            raise InvalidReport("subject.phone", str(exc)) from None
    if data.subject.id_number:
        try:
            id_key = subject_key(secret, phone=None, id_number=normalize_id_number(data.subject.id_number))
        except ValueError as exc:
            raise InvalidReport("subject.id_number", str(exc)) from None
    return phone_key, id_key


async def receive(
    session: AsyncSession, feed: str, data: FraudReportCreate, *, secret: str, window: timedelta
) -> tuple[FraudReport, bool]:
    """Stores a report once per (feed, external_id) and matches it; returns (report, created)."""
    phone_key, id_key = _keys(secret, data)
    digest = hashlib.sha256(orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()
    report = FraudReport(
        feed=feed, external_id=data.external_id, reported_at=data.reported_at, phone_key=phone_key, id_key=id_key,
        loss=data.loss, fraud_type=data.fraud_type, content_hash=digest, received_at=datetime.now(UTC),
    )  # fmt: skip
    await repository.lock_subject(session, phone_key, id_key)
    if await repository.insert_report(session, report) is None:
        existing = await repository.by_external_id(session, feed, data.external_id)
        assert existing is not None
        if existing.content_hash != digest:
            metrics.FRAUD_REPORTS.labels("rejected").inc()
            raise ReportConflict(f"external_id {data.external_id!r} was already sent with different content")
        metrics.FRAUD_REPORTS.labels("duplicate").inc()
        return existing, False
    metrics.FRAUD_REPORTS.labels("accepted").inc()
    matched = await repository.match_report(session, report, window)
    metrics.POST_WARNING_MATCHES.inc(matched)
    return report, True


async def add_feed(session: AsyncSession, name: str, *, api_key: str | None = None) -> str:
    """Registers a crime-report feed; returns its API key, shown once and stored hashed."""
    if await repository.feed_by_name(session, name) is not None:
        raise FeedError(f"feed {name!r} already exists")
    key = api_key or new_api_key()
    await repository.add_feed(
        session, ReportFeed(name=name, key_hash=hash_api_key(key), key_prefix=key[:KEY_PREFIX_LENGTH])
    )
    return key


async def revoke_feed(session: AsyncSession, name: str) -> None:
    feed = await repository.feed_by_name(session, name)
    if feed is None or feed.revoked_at is not None:
        raise FeedError(f"no active feed named {name!r}")
    feed.revoked_at = datetime.now(UTC)
    session.add(feed)
