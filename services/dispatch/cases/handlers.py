"""Thin Kafka and timer handlers: decode, then hand to the flow in `service.py`."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from services.dispatch.cases import service
from services.dispatch.notify.service import Notifier
from services.dispatch.sms.provider import SmsProvider
from shared.events import Envelope, OutcomeRecordedV1, WarningReceivedV1
from shared.inbox import SessionBatchHandler, each
from shared.timers import BatchHandler, Due, Handler

WARNINGS_GROUP = "dispatch-warnings"
OUTCOMES_GROUP = "dispatch-outcomes"


def on_warnings(notifier: Notifier) -> SessionBatchHandler:
    async def handle(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
        warnings = [WarningReceivedV1.model_validate(e.data) for e in envelopes if e.type == WarningReceivedV1.TYPE]
        await service.on_warnings(session, warnings, notifier, datetime.now(UTC))

    return handle


def on_outcome(notifier: Notifier) -> SessionBatchHandler:
    async def handle(session: AsyncSession, envelope: Envelope) -> None:
        if envelope.type == OutcomeRecordedV1.TYPE:
            outcome = OutcomeRecordedV1.model_validate(envelope.data)
            await service.on_outcome(session, outcome, notifier, datetime.now(UTC))

    return each(handle)


def on_deadline(notifier: Notifier) -> Handler:
    async def handle(session: AsyncSession, due: Due) -> None:
        await service.on_deadlines(session, [due], notifier, datetime.now(UTC))

    return handle


def on_deadlines(notifier: Notifier) -> BatchHandler:
    async def handle(session: AsyncSession, dues: Sequence[Due]) -> Mapping[int, Exception]:
        await service.on_deadlines(session, dues, notifier, datetime.now(UTC))
        return {}

    return handle


def on_sms_together(provider: SmsProvider, notifier: Notifier) -> BatchHandler:
    async def handle(session: AsyncSession, dues: Sequence[Due]) -> Mapping[int, Exception]:
        return await service.send_sms_together(session, dues, provider, notifier, datetime.now(UTC))

    return handle


def on_sms_due(provider: SmsProvider, notifier: Notifier) -> Handler:
    async def handle(session: AsyncSession, due: Due) -> None:
        await service.send_sms(session, due, provider, notifier, datetime.now(UTC))

    return handle
