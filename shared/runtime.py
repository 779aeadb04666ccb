"""The long-running side of a service: its Kafka producer and the tasks (relay, consumers) that need it.

The producer is started in the background and retried, so a service starts and answers (intake keeps
accepting into its outbox) while the broker is still down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.kafka import ensure_topics

log = logging.getLogger(__name__)

Runner = Callable[[], Awaitable[None]]


class Background:
    def __init__(self, producer: AIOKafkaProducer, runners: dict[str, Runner], *, bootstrap_servers: str) -> None:
        self.producer = producer
        self.bootstrap_servers = bootstrap_servers
        self.runners = runners
        self.producer_started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name="background")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.producer_started.is_set():
            await self.producer.stop()

    async def _main(self) -> None:
        while True:
            try:
                await self.producer.start()
                break
            except KafkaError as exc:
                log.warning("broker not reachable yet (%s); retrying", exc)
                await asyncio.sleep(1)
        self.producer_started.set()
        try:
            await ensure_topics(self.bootstrap_servers)
        except Exception as exc:  # topics are auto-created too; creating them here only sets partition counts
            log.warning("could not create topics: %s", exc)
        async with asyncio.TaskGroup() as tg:
            for name, runner in self.runners.items():
                tg.create_task(_supervise(name, runner), name=name)

    async def broker_reachable(self) -> bool:
        if not self.producer_started.is_set():
            return False
        try:
            async with asyncio.timeout(2):
                return bool(await self.producer.client.fetch_all_metadata())
        except (KafkaError, TimeoutError, OSError):
            return False


async def _supervise(name: str, runner: Runner) -> None:
    """A task that dies of a bug is logged and restarted rather than silently gone."""
    while True:
        try:
            await runner()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s crashed; restarting", name)
            await asyncio.sleep(1)


async def every(seconds: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `job` now and then every `seconds`, for as long as the service runs; a failed run is logged and the
    next one tried on time (a database outage must not end a periodic job)."""
    while True:
        try:
            await job()
        except Exception as exc:
            log.warning("%s failed: %s", what, exc)
        await asyncio.sleep(seconds)
