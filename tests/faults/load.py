"""An open-loop warning generator that keeps every record until intake acknowledged it.

Records go out on a fixed schedule (single posts, and every `batch_every`-th tick a batch), whether or not
earlier ones were answered. A record that is refused for now (503 or 429 with Retry-After, a connection
refused or cut while intake is down) is posted again later, byte for byte: its `external_id` makes the
retry safe. Anything else is a broken promise and is kept as a violation: a 500, a 503 without Retry-After,
a 409 or 422 for a record that was valid, a batch item that is not a 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRYABLE = (429, 503)
MAX_RETRY_WAIT_S = 2.0  # honour Retry-After, but keep probing: the test measures how soon intake is back
CONNECTION_RETRY_S = 0.25


@dataclass(frozen=True)
class Acked:
    n: int
    warning_id: str
    at: float  # time.time() of the first 202
    duplicate: bool  # the first 202 this generator saw said "duplicate": an earlier post was stored unanswered


@dataclass
class LoadStats:
    statuses: Counter[int] = field(default_factory=Counter)
    connection_failures: int = 0
    violations: list[str] = field(default_factory=list)


def retry_wait(headers: httpx.Headers) -> float | None:
    """Seconds to wait from a Retry-After of delta-seconds; None when it is missing or not a positive number."""
    value = headers.get("retry-after", "")
    if not value.isdigit() or int(value) <= 0:
        return None
    return min(float(value), MAX_RETRY_WAIT_S)


class WarningLoad:
    def __init__(
        self,
        url: str,
        api_key: str,
        record: Callable[[int], dict[str, Any]],
        *,
        batch_every: int = 5,
        batch_size: int = 5,
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.record = record
        self.batch_every = batch_every
        self.batch_size = batch_size
        self.acked: dict[int, Acked] = {}
        self.stats = LoadStats()
        self.posted = 0  # records handed to intake at least once
        self._records: dict[int, dict[str, Any]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(15, connect=2))

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self, rate: float, stop: asyncio.Event, *, first: int = 0, count: int | None = None) -> None:
        """Post records `first`, `first + 1`, ... at `rate` per second until `stop` is set or `count` were sent."""
        started = time.monotonic()
        n, tick = first, 0
        while not stop.is_set() and (count is None or n < first + count):
            size = self.batch_size if self.batch_every and tick % self.batch_every == self.batch_every - 1 else 1
            if count is not None:
                size = min(size, first + count - n)
            numbers = list(range(n, n + size))
            n, tick = n + size, tick + 1
            self.posted += size
            task = asyncio.create_task(self._deliver(numbers))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            delay = started + tick / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def drain(self, timeout: float) -> None:
        """Wait until every record posted so far is acknowledged (retries go on meanwhile)."""
        if self._deliveries:
            done, pending = await asyncio.wait(set(self._deliveries), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                unacked = self.posted - len(self.acked)
                self.stats.violations.append(
                    f"{unacked} records still unacknowledged {timeout:.0f}s after the last post"
                )
            for task in done:
                task.result()

    def acked_before(self, moment: float) -> list[str]:
        return [a.warning_id for a in self.acked.values() if a.at <= moment]

    def _body(self, n: int) -> dict[str, Any]:
        if n not in self._records:
            self._records[n] = self.record(n)
        return self._records[n]

    async def _deliver(self, numbers: list[int]) -> None:
        pending = list(numbers)
        while pending:
            single = len(numbers) == 1
            try:
                if single:
                    response = await self._client.post(
                        f"{self.url}/v1/warnings", json=self._body(pending[0]), headers=self.headers
                    )
                else:
                    response = await self._client.post(
                        f"{self.url}/v1/warnings/batch",
                        json={"warnings": [self._body(n) for n in pending]},
                        headers=self.headers,
                    )
            except httpx.TransportError:
                self.stats.connection_failures += 1
                await asyncio.sleep(CONNECTION_RETRY_S)
                continue
            self.stats.statuses[response.status_code] += 1
            if response.status_code in RETRYABLE:
                wait = retry_wait(response.headers)
                if wait is None:
                    self.stats.violations.append(f"{response.status_code} without a usable Retry-After")
                    wait = MAX_RETRY_WAIT_S
                await asyncio.sleep(wait)
                continue
            if single and response.status_code == 202:
                self._acknowledge(pending[0], response.json())
                pending = []
            elif not single and response.status_code == 200:
                pending = self._batch_results(pending, response.json())
            else:
                title = _title(response)
                self.stats.violations.append(f"{response.status_code} {title} for records {pending[:3]}...")
                # keep trying: a 500 during an outage fails the run, but the record must still get in for the checks
                await asyncio.sleep(MAX_RETRY_WAIT_S)

    def _batch_results(self, pending: list[int], body: dict[str, Any]) -> list[int]:
        left = []
        for n, result in zip(pending, body["results"], strict=True):
            if result["code"] == 202:
                self._acknowledge(n, result)
            else:
                self.stats.violations.append(f"batch item {n}: {result['code']} {result.get('status')}")
                left.append(n)
        return left

    def _acknowledge(self, n: int, body: dict[str, Any]) -> None:
        if n in self.acked:
            if self.acked[n].warning_id != body["id"]:
                self.stats.violations.append(f"record {n} acknowledged under two ids")
            return
        self.acked[n] = Acked(n, str(body["id"]), time.time(), bool(body["duplicate"]))


def _title(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "(no JSON body)"
    return str(body.get("title", "")) if isinstance(body, dict) else ""
