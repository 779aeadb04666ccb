"""SMS to subjects: one interface, an HTTP implementation with bounded retries, and the reminder texts.

Every attempt of one `send` carries the same `Idempotency-Key` (and every message of a batch its own key), so
retrying after a timeout or a 5xx never sends a second message: the gateway (or carrier) answers a repeated key
with the first message. Failures of the provider are results, never exceptions; the phone number never appears in
a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from shared.logs import mask_personal
from shared.personal import mask_phone

log = logging.getLogger(__name__)

_HOTLINE = "96110"
_ERROR_MAX_CHARS = 300

# One reminder per fraud type of the contract (§1). No personal data: the same text goes to every subject.
_TEXTS: dict[str, str] = {
    "task_rebate": "【反诈提醒】您可能正遭遇刷单返利诈骗：刷单就是诈骗，切勿转账。如有疑问请拨打{hotline}。",
    "investment": "【反诈提醒】您可能正遭遇虚假投资理财诈骗：“内幕消息”“带单荐股”高回报都是骗局，"
    "切勿下载陌生投资软件或转账。如有疑问请拨打{hotline}。",
    "loan": "【反诈提醒】您可能正遭遇虚假网络贷款诈骗：放款前要求交保证金、解冻费的都是诈骗，"
    "切勿转账。如有疑问请拨打{hotline}。",
    "customer_service": "【反诈提醒】您可能正遭遇冒充电商物流客服诈骗：自称客服要求退款理赔、"
    "索要验证码或转账的都是诈骗。如有疑问请拨打{hotline}。",
    "impersonate_officials": "【反诈提醒】您可能正遭遇冒充公检法诈骗：公检法机关不会电话办案，也没有“安全账户”，"
    "切勿转账。如有疑问请拨打{hotline}。",
    "impersonate_acquaintance": "【反诈提醒】您可能正遭遇冒充领导熟人诈骗：网上自称领导、熟人要求转账的，"
    "务必当面或电话核实，切勿直接转账。如有疑问请拨打{hotline}。",
    "romance": "【反诈提醒】您可能正遭遇网络婚恋交友诈骗（杀猪盘）：网友引导投资、博彩或借钱的都是诈骗，"
    "切勿转账。如有疑问请拨打{hotline}。",
    "game_trade": "【反诈提醒】您可能正遭遇网络游戏虚假交易诈骗：游戏账号、装备请在官方平台交易，"
    "切勿私下转账或扫码付款。如有疑问请拨打{hotline}。",
    "other": "【反诈提醒】您可能正遭遇电信网络诈骗：不听、不信、不转账，陌生来电要警惕。如有疑问请拨打{hotline}。",
}


def sms_text(fraud_type: str) -> str:
    """The anti-fraud reminder for `fraud_type` (the general one for a type this version does not know)."""
    return _TEXTS.get(fraud_type, _TEXTS["other"]).format(hotline=_HOTLINE)


@dataclass(frozen=True)
class SmsResult:
    accepted: bool
    provider_id: str | None
    error: str | None
    retryable: bool


@dataclass(frozen=True)
class SmsMessage:
    idempotency_key: str
    phone: str
    text: str


MAX_BATCH = 100
_NO_BATCH_ENDPOINT = (404, 405)
T = TypeVar("T")


class SmsProvider(Protocol):
    async def send(self, *, idempotency_key: str, phone: str, text: str) -> SmsResult: ...

    async def send_many(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        """A result for each message, in their order."""
        ...


class _Retryable(Exception):
    """An attempt that failed in a way worth repeating (timeout, connection, 5xx, 429)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _RetryAfterOr(wait_base):
    """The server's Retry-After (capped) when it sent one, else the fallback backoff."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.cap)
        return float(self.fallback(retry_state))


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """A Retry-After header (delta-seconds or an HTTP date) in seconds from now; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class HttpSmsProvider:
    """`POST {base_url}/v1/messages` with retries bounded by `total_deadline_s`, each attempt by `attempt_timeout_s`;
    `send_many` posts up to `MAX_BATCH` messages at a time to `{base_url}/v1/messages/batch`, one by one to a
    gateway that has no such endpoint.

    The client is injected: the app's lifespan owns it (and its connection pool).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        api_key: str | None = None,
        total_deadline_s: float = 30.0,
        attempt_timeout_s: float = 5.0,
        max_retry_after_s: float = 10.0,
    ) -> None:
        if total_deadline_s <= 0 or attempt_timeout_s <= 0:
            raise ValueError("total_deadline_s and attempt_timeout_s must be positive")
        self.client = client
        self.url = base_url.rstrip("/") + "/v1/messages"
        self.batch_url = self.url + "/batch"
        self.batches = True  # until the gateway says it has no batch endpoint
        self.api_key = api_key
        self.total_deadline_s = total_deadline_s
        self.attempt_timeout_s = attempt_timeout_s
        self.max_retry_after_s = max_retry_after_s

    async def send(self, *, idempotency_key: str, phone: str, text: str) -> SmsResult:
        return await self._send(SmsMessage(idempotency_key=idempotency_key, phone=phone, text=text))

    async def _send(self, message: SmsMessage) -> SmsResult:
        label = _label(message)
        try:
            result = await self._retried(label, lambda timeout: self._attempt(message, timeout))
        except _GaveUp as gave_up:
            return gave_up.result
        _log_result(label, result)
        return result

    async def send_many(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        if len(messages) == 1 or not self.batches:
            return await self._one_by_one(messages)
        chunks = [messages[i : i + MAX_BATCH] for i in range(0, len(messages), MAX_BATCH)]
        return [result for chunk in await asyncio.gather(*map(self._batch, chunks)) for result in chunk]

    async def _one_by_one(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        return list(await asyncio.gather(*map(self._send, messages)))

    async def _batch(self, messages: Sequence[SmsMessage]) -> list[SmsResult]:
        try:
            results = await self._retried(
                f"SMS batch of {len(messages)}", lambda timeout: self._batch_attempt(messages, timeout)
            )
        except _GaveUp as gave_up:
            return [gave_up.result] * len(messages)
        except _NoBatchEndpoint as exc:
            if self.batches:
                self.batches = False
                log.warning("the SMS gateway has no batch endpoint (%s): sending one message per request", exc)
            return await self._one_by_one(messages)
        for message, result in zip(messages, results, strict=True):
            _log_result(_label(message), result)
        return results

    async def _retried(self, label: str, attempt: Callable[[float], Awaitable[T]]) -> T:
        """`attempt(timeout)` until it answers or raises anything but `_Retryable`, within the total deadline;
        `_GaveUp` (holding the result to report) once the deadline leaves no room for another attempt."""
        started = time.monotonic()
        attempts = 0
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            wait=_RetryAfterOr(wait_random_exponential(multiplier=0.2, max=5), cap=self.max_retry_after_s),
            # Never start an attempt (nor sleep towards one) past the deadline.
            stop=stop_after_delay(self.total_deadline_s) | stop_before_delay(self.total_deadline_s),
            reraise=True,
        )
        try:
            async for retry in retrying:
                with retry:
                    attempts += 1
                    remaining = self.total_deadline_s - (time.monotonic() - started)
                    try:
                        return await attempt(max(min(self.attempt_timeout_s, remaining), 0.001))
                    except _Retryable as exc:
                        log.warning("%s: attempt %d failed, retryable: %s", label, attempts, exc.reason)
                        raise
        except _Retryable as exc:
            error = f"gave up after {attempts} attempt(s) in {time.monotonic() - started:.1f}s: {exc.reason}"
            log.warning("%s not sent: %s", label, error)
            raise _GaveUp(SmsResult(accepted=False, provider_id=None, error=error, retryable=True)) from None
        raise AssertionError("tenacity ended without an outcome")  # reraise=True: never reached

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def _post(self, url: str, payload: dict[str, Any], headers: dict[str, str], timeout: float) -> httpx.Response:
        """One POST: its answer, whatever the status; `_Retryable` for no answer, `_Unusable` for a request that
        repeating will not help (an unusable URL, too many redirects)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.client.post(url, json=payload, headers=headers, timeout=httpx.Timeout(timeout))
        except (TimeoutError, httpx.TimeoutException):
            raise _Retryable(f"no answer within {timeout:.1f}s") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise _Unusable(f"request failed ({type(exc).__name__})") from None

    async def _attempt(self, message: SmsMessage, timeout: float) -> SmsResult:
        """One POST of one message: a result for an answer that settles it (2xx, other 4xx), `_Retryable` otherwise."""
        payload = {"to": message.phone, "text": message.text}
        try:
            response = await self._post(self.url, payload, self._headers(message.idempotency_key), timeout)
        except _Unusable as exc:
            return _refused(exc.reason, message.phone)
        status, body = response.status_code, _json(response)
        if status == 429 or status >= 500:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            raise _Retryable(f"HTTP {status}{_describe(body, message.phone)}", retry_after)
        return _item_result(status, body, message.phone)

    async def _batch_attempt(self, messages: Sequence[SmsMessage], timeout: float) -> list[SmsResult]:
        """One POST of a batch: a result per message once the gateway answered for each (2xx) or refused them all
        (other 4xx); `_Retryable` for a failure of the whole request or an answer that does not account for every
        message (repeating is harmless: each message keeps its key); `_NoBatchEndpoint` for 404 and 405."""
        payload = {
            "messages": [{"idempotency_key": m.idempotency_key, "to": m.phone, "text": m.text} for m in messages]
        }
        try:
            response = await self._post(self.batch_url, payload, self._headers(), timeout)
        except _Unusable as exc:
            return [_refused(exc.reason, m.phone) for m in messages]
        status, body = response.status_code, _json(response)
        if status in _NO_BATCH_ENDPOINT:
            raise _NoBatchEndpoint(f"HTTP {status}")
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}", retry_after_seconds(response.headers.get("retry-after")))
        if not 200 <= status < 300:
            return [_refused(f"HTTP {status}{_describe(body, m.phone)}", m.phone) for m in messages]
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(messages):
            raise _Retryable(f"HTTP {status} without a result for each of the {len(messages)} messages")
        if not all(isinstance(r, dict) and isinstance(r.get("code"), int) for r in results):
            raise _Retryable(f"HTTP {status} with a result lacking its code")
        return [_item_result(r["code"], r.get("body"), m.phone) for r, m in zip(results, messages, strict=True)]


class _Unusable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NoBatchEndpoint(Exception):
    pass


class _GaveUp(Exception):
    def __init__(self, result: SmsResult) -> None:
        super().__init__(result.error)
        self.result = result


def _label(message: SmsMessage) -> str:
    return f"SMS to {mask_phone(message.phone)} (key {message.idempotency_key})"


def _log_result(label: str, result: SmsResult) -> None:
    if result.accepted:
        log.info("%s accepted as %s", label, result.provider_id)
    elif result.retryable:
        log.warning("%s not sent: %s", label, result.error)
    else:
        log.warning("%s refused: %s", label, result.error)


def _item_result(status: int, body: Any, phone: str) -> SmsResult:
    """What the gateway's answer for one message (a single post's, or a batch's item) settles."""
    if 200 <= status < 300:
        return SmsResult(accepted=True, provider_id=_provider_id(body, status), error=None, retryable=False)
    error = _scrub(f"HTTP {status}{_describe(body, phone)}", phone)
    # Only a batch's item can end here retryable: the timer engine tries it again later, alone or in a batch.
    retryable = status == 429 or status >= 500
    return SmsResult(accepted=False, provider_id=None, error=error, retryable=retryable)


def _refused(error: str, phone: str) -> SmsResult:
    return SmsResult(accepted=False, provider_id=None, error=_scrub(error, phone), retryable=False)


def _scrub(text: str, phone: str) -> str:
    """Whatever a gateway said, with the number (and anything shaped like one) masked, and bounded."""
    if phone:
        text = text.replace(phone, mask_phone(phone))
    return mask_personal(text)[:_ERROR_MAX_CHARS]


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _provider_id(body: Any, status: int) -> str | None:
    value = body.get("id") if isinstance(body, dict) else None
    if value is None:
        log.warning("the SMS gateway accepted a message (HTTP %d) without an id", status)
        return None
    return str(value)


def _describe(body: Any, phone: str) -> str:
    """`: title — detail` from a problem+json answer, scrubbed; empty when the body says nothing useful."""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in ("title", "detail") if isinstance(body.get(k), str | int)]
    errors = body.get("errors")
    if isinstance(errors, list):
        fields = [str(e.get("field")) for e in errors if isinstance(e, dict) and e.get("field")]
        if fields:
            parts.append("fields: " + ", ".join(fields))
    return _scrub(": " + " — ".join(parts), phone) if parts else ""
