"""A load generator light enough not to be the bottleneck on a small machine: HTTP/1.1 keep-alive over raw
asyncio streams, requests pre-serialised by the caller, no HTTP library in the loop.

- `closed_loop`: N connections, each sending its next request as soon as the previous answer arrived; what a
  service sustains at that concurrency.
- `open_loop`: requests sent on a fixed schedule whether or not earlier ones were answered (a new connection
  is opened when none is idle), each latency counted from its scheduled time, so a stall is not hidden by the
  generator waiting for it (coordinated omission).
- `ceiling`: the generator against a trivial server in another process (`python -m tests.bench.load PORT`),
  to show how far above the measured service the generator itself can go.

Responses need a Content-Length or chunked encoding (uvicorn sends one or the other).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from shared.devinfra import free_port, wait_for

RequestFactory = Callable[[int], bytes]  # the n-th request, every byte of it
T = TypeVar("T")


def http_request(method: str, path: str, *, port: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> Response:
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            return Response(status, await self._chunks())
        return Response(status, await self.reader.readexactly(length) if length else b"")

    async def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def cpu_seconds() -> float:
    """CPU time this process (the generator) has used so far, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan if there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class ClosedLoopResult:
    connections: int
    seconds: float  # the measured window, after the warm-up
    requests: int  # answered inside the window
    records: int  # what `records_of` counted in those answers
    statuses: Counter[int]
    errors: int  # connections that failed (reset, refused)
    latencies: list[float]
    generator_cpu: float  # CPU seconds the generator used inside the window

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def generator_cores(self) -> float:
        return self.generator_cpu / self.seconds


async def closed_loop(
    ports: Sequence[int],
    make_request: RequestFactory,
    *,
    connections: int,
    seconds: float,
    warmup: float = 1.0,
    records_of: Callable[[Response], int] = lambda r: 1 if 200 <= r.status < 300 else 0,
    counter: itertools.count[int] | None = None,
) -> ClosedLoopResult:
    """Each connection sends its next request when the last was answered; answers completing during the
    `seconds` after `warmup` are counted. Connections are spread over `ports` in turn (replicas of a service, as a
    load balancer would)."""
    numbers = counter if counter is not None else itertools.count()
    result = ClosedLoopResult(connections, seconds, 0, 0, Counter(), 0, [], 0.0)
    start = time.monotonic()
    window = (start + warmup, start + warmup + seconds)

    async def worker(port: int) -> None:
        try:
            conn = await Connection.open(port)
        except OSError:
            result.errors += 1
            return
        try:
            while True:
                request = make_request(next(numbers))
                sent = time.monotonic()
                if sent >= window[1]:
                    return
                response = await conn.exchange(request)
                done = time.monotonic()
                if window[0] <= done < window[1]:
                    result.requests += 1
                    result.records += records_of(response)
                    result.statuses[response.status] += 1
                    result.latencies.append(done - sent)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
        finally:
            await conn.close()

    async def meter() -> None:
        await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
        cpu = cpu_seconds()
        await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
        result.generator_cpu = cpu_seconds() - cpu

    await asyncio.gather(meter(), *(worker(ports[i % len(ports)]) for i in range(connections)))
    return result


@dataclass
class Sent:
    n: int
    scheduled: float  # time.monotonic() the request was due
    done: float  # when its answer (or failure) was complete; inf if it was still unanswered when the run ended
    response: Response | None  # None: the connection failed, or no answer came in time

    @property
    def latency(self) -> float:
        return self.done - self.scheduled


@dataclass
class OpenLoopResult:
    rate: float
    seconds: float
    started: float  # time.monotonic() of the first scheduled request
    started_wall: float  # the same moment as time.time(), to compare with other processes' clocks
    ended: float = 0.0  # when the run stopped waiting for answers
    sent: list[Sent] = field(default_factory=list)
    connections_opened: int = 0
    generator_cpu: float = 0.0

    def wall(self, monotonic: float) -> float:
        return self.started_wall + (monotonic - self.started)

    @property
    def unanswered(self) -> list[Sent]:
        return [s for s in self.sent if s.done == math.inf]


async def open_loop(
    ports: Sequence[int],
    make_request: RequestFactory,
    *,
    rate: float,
    seconds: float,
    grace: float = 10.0,
    max_connections: int = 512,
) -> OpenLoopResult:
    """`rate` requests per second for `seconds`, each on an idle connection or a new one (up to
    `max_connections`, opened to `ports` in turn; beyond that a request waits, and its wait counts in its latency).
    Requests still unanswered `grace` seconds after the last was due are abandoned, with an infinite latency."""
    idle: list[Connection] = []
    slots = asyncio.Semaphore(max_connections)
    started, started_wall = time.monotonic(), time.time()
    result = OpenLoopResult(rate, seconds, started, started_wall)
    cpu = cpu_seconds()

    async def fire(n: int, scheduled: float) -> None:
        request = make_request(n)
        conn: Connection | None = None
        try:
            async with slots:
                conn = idle.pop() if idle else None
                if conn is None:
                    conn = await Connection.open(ports[result.connections_opened % len(ports)])
                    result.connections_opened += 1
                response = await conn.exchange(request)
                result.sent.append(Sent(n, scheduled, time.monotonic(), response))
                idle.append(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.sent.append(Sent(n, scheduled, time.monotonic(), None))
            if conn is not None:
                await conn.close()
        except asyncio.CancelledError:
            result.sent.append(Sent(n, scheduled, math.inf, None))
            if conn is not None:
                conn.writer.close()
            raise

    tasks: list[asyncio.Task[None]] = []
    for n in range(int(rate * seconds)):
        scheduled = started + n / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(n, scheduled)))
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, started + seconds + grace - time.monotonic()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    result.ended = time.monotonic()
    result.generator_cpu = cpu_seconds() - cpu
    for conn in idle:
        await conn.close()
    return result


# --- the generator's own ceiling ---------------------------------------------------------------------------

_TRIVIAL_RESPONSE = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"


class _Trivial(asyncio.Protocol):
    """Answers every request with a fixed 202 at once: a server that costs as little as a server can."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(_TRIVIAL_RESPONSE)


async def _serve_trivial(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def ceiling(
    make_request: RequestFactory, *, connections: int, seconds: float, records_per_request: int = 1
) -> ClosedLoopResult:
    """The generator, as configured for the service, against the trivial server in a process of its own."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.bench.load", str(port))
    try:

        async def listening() -> bool:
            try:
                await (await Connection.open(port)).close()
            except OSError:
                return False
            return True

        await wait_for(listening, timeout=30, interval=0.05, message="the trivial server")
        return await closed_loop(
            [port],
            make_request,
            connections=connections,
            seconds=seconds,
            records_of=lambda r: records_per_request if r.status == 202 else 0,
        )
    finally:
        server.kill()
        await server.wait()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed (the loop uvicorn serves on), else on asyncio's own loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


if __name__ == "__main__":
    run(_serve_trivial(int(sys.argv[1])))
