"""The async engine and sessions every service uses (SQLModel on asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

SessionFactory = async_sessionmaker[AsyncSession]
T = TypeVar("T")
log = logging.getLogger(__name__)


def sqlalchemy_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as libpq and asyncpg write them) and select the asyncpg driver."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use postgresql://")


def asyncpg_dsn(url: str) -> str:
    """The same URL as asyncpg.connect() wants it, for the LISTEN connections."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    application_name: str = "quanzu",
    role: str | None = None,
    scope: dict[str, str] | None = None,
    pre_ping: bool = True,
) -> AsyncEngine:
    """An engine; with `role`, every connection runs as that role (one that owns nothing and cannot bypass
    row-level security), so the service's queries are held to the caller's scope whoever logged in.

    The role is a startup parameter of the connection, not a `SET ROLE` statement: a session-level SET
    issued inside a transaction is undone when that transaction rolls back, which would silently hand a
    pooled connection back its login role (a superuser, in development) and bypass every policy.

    `scope`, likewise a startup parameter, is the scope of every transaction that sets none of its own: only for
    an engine that no request handler uses (`Runtime.system_engine`). `pre_ping` tests each connection before use
    (a round trip): requests want it, so that a database restart costs no client an error; background work,
    which retries anyway, does not.
    """
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_timeout=5,
        connect_args={
            "server_settings": _server_settings(application_name, role, scope),
            "timeout": 5,
            "command_timeout": 30,
        },
    )


def _server_settings(application_name: str, role: str | None, scope: dict[str, str] | None = None) -> dict[str, str]:
    """A connection's startup parameters: its name, its role and the scope it starts in."""
    settings = {"application_name": application_name, **(scope or {})}
    if role is not None:
        settings["role"] = role
    return settings


async def _keep(_: asyncpg.Connection) -> None:
    """Nothing to reset: the pool's users only set transaction-local settings (asyncpg's default reset is a round
    trip on every release)."""


def make_pool(
    url: str, *, size: int = 10, application_name: str = "quanzu", role: str | None = None
) -> asyncpg.Pool[asyncpg.Record]:
    """A plain asyncpg pool, as `make_engine`'s connections are (same role, same timeouts), for a hot path whose
    statements are few and fixed and whose time the ORM's session and pool machinery would mostly be. Opens no
    connection until first used, so a service starts while its database is away."""
    return asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=0,
        max_size=size,
        reset=_keep,
        server_settings=_server_settings(application_name, role),
        timeout=5,
        command_timeout=30,
    )


def make_session_factory(engine: AsyncEngine, *, preset_scope: dict[str, str] | None = None) -> SessionFactory:
    """Sessions on `engine`; `preset_scope`: the scope its connections start with (`make_engine(scope=...)`)."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False, info={"preset_scope": preset_scope})


@asynccontextmanager
async def unit_of_work(factory: SessionFactory, scope: dict[str, str] | None = None) -> AsyncIterator[AsyncSession]:
    """One transaction: commits if the block succeeds, rolls back if it raises. Services only flush.

    `scope` sets who is acting for row-level security (`shared.scope`); without it scoped rows are invisible. On a
    factory whose connections start with that scope already, setting it again is skipped (a round trip saved in
    every consumer's and timer's transaction).
    """
    async with factory() as session, session.begin():
        if scope and scope != session.info.get("preset_scope"):
            await set_local(session, scope)
        yield session


async def set_local(session: AsyncSession, settings: dict[str, str]) -> None:
    """Set configuration parameters for the current transaction only (set_config(..., true) is SET LOCAL)."""
    names = list(settings)
    sql = "SELECT " + ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(names)))
    params = {f"n{i}": n for i, n in enumerate(names)} | {f"v{i}": settings[n] for i, n in enumerate(names)}
    await (await session.connection()).execute(text(sql), params)


_REMEMBERED = "quanzu.remembered"


async def remembered(session: AsyncSession, name: str, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
    """What `read` returns for `key`, read once per session (one transaction): for what rarely changes and a batch
    asks for again and again, a team or a policy. `forget` drops what was read under `name`, after a change."""
    known: dict[Hashable, Any] = session.info.setdefault(_REMEMBERED, {}).setdefault(name, {})
    if key not in known:
        known[key] = await read()
    value: T = known[key]
    return value


def forget(session: AsyncSession, *names: str) -> None:
    for name in names:
        session.info.get(_REMEMBERED, {}).pop(name, None)


_HELD = "quanzu.held_rows"
_HELD_UPDATES = "quanzu.held_updates"
Row = dict[str, object]


async def insert_rows(session: AsyncSession, table: sa.Table, rows: list[Row]) -> None:
    """Insert plain rows that nothing in the transaction reads back (outbox events, deadlines, a case's timeline),
    without the ORM's per-object cost; or hold them for the end of the enclosing `write_behind`.

    The session is flushed first, as a query would autoflush it: the rows may refer to objects added to it."""
    if not rows:
        return
    held: dict[sa.Table, list[Row]] | None = session.info.get(_HELD)
    if held is not None:
        held.setdefault(table, []).extend(rows)
        return
    await session.flush()
    await (await session.connection()).execute(sa.insert(table), rows)


async def write_held(
    session: AsyncSession, table: sa.Table | None = None, *, matching: Callable[[Row], bool] | None = None
) -> None:
    """Write the rows held for `table` (or all of them; or only those `matching`) now, after flushing the session:
    before a statement that must see them, and at the end of the `write_behind` block."""
    held: dict[sa.Table, list[Row]] | None = session.info.get(_HELD)
    if not held:
        return
    now: dict[sa.Table, list[Row]] = {}
    for each in [table] if table is not None else list(held):
        rows = held.pop(each, [])
        if matching is not None:
            held[each] = [row for row in rows if not matching(row)]
            rows = [row for row in rows if matching(row)]
        if rows:
            now[each] = rows
    if not now:
        return
    await session.flush()
    conn = await session.connection()
    for each, rows in now.items():
        await _write_held_updates(session, each)  # they were asked for before these rows were written
        await conn.execute(sa.insert(each), rows)


def hold_update(session: AsyncSession, table: sa.Table, statement: sa.Executable, value: object) -> bool:
    """Inside a `write_behind` block, add `value` to the list that `statement` (an update of `table`) takes as its
    `:values` parameter, and run it once for all of them: before any row held for `table` is written, or at the end
    of the block, whichever comes first; so that it changes the rows written before it was asked for, and none
    written after. False outside a block: the caller runs it now.

    A batch of a hundred SMS or escalations, each retiring a task's deadlines, is then one update, not a hundred."""
    if _HELD not in session.info:
        return False
    updates: dict[sa.Table, dict[sa.Executable, list[object]]] = session.info.setdefault(_HELD_UPDATES, {})
    updates.setdefault(table, {}).setdefault(statement, []).append(value)
    return True


async def _write_held_updates(session: AsyncSession, table: sa.Table | None = None) -> None:
    updates: dict[sa.Table, dict[sa.Executable, list[object]]] | None = session.info.get(_HELD_UPDATES)
    if not updates:
        return
    conn = await session.connection()
    for each in [table] if table is not None else list(updates):
        for statement, values in updates.pop(each, {}).items():
            await conn.execute(statement, {"values": values})


@asynccontextmanager
async def write_behind(session: AsyncSession) -> AsyncIterator[None]:
    """Hold the `insert_rows` (and `hold_update`s) of the block and write them at its end, one statement per table.

    A message's or a deadline's work publishes events, schedules deadlines and appends to a case's timeline at
    several points; held, they are a few statements at the end, after the ORM's one flush (so a new case is
    inserted once, in its final state). A batch of a hundred escalations makes a few statements, not hundreds.
    The rows are written in the order they were inserted, so an outbox keeps its order. If the block raises,
    nothing held is written. Nested blocks hold for the outermost one.
    """
    if _HELD in session.info:
        yield
        return
    session.info[_HELD] = {}
    try:
        yield
        await write_held(session)
        await _write_held_updates(session)  # those of tables with no rows held
    finally:
        del session.info[_HELD]
        session.info.pop(_HELD_UPDATES, None)


_DRIVER_PACKAGES = ("asyncpg", "sqlalchemy")


def _raised_in_driver(err: BaseException) -> bool:
    tb = err.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.split(".", 1)[0] in _DRIVER_PACKAGES:
            return True
        tb = tb.tb_next
    return False


# SQLSTATE classes meaning "cannot reach or use the server now": connection exceptions, insufficient
# resources, operator intervention (shutdown, starting up), and a database not accepting connections; and a
# transaction the server rolled back to break a deadlock (e.g. a member's 签收 and the acknowledgement deadline
# firing at once lock the task and its deadline in opposite orders): nothing was changed, so the same request or
# message succeeds when tried again.
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")
_UNAVAILABLE_SQLSTATES = ("55000", "40P01")


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The error and everything it was raised from or while handling, each once (drivers wrap and re-wrap)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        stack.extend([getattr(err, "orig", None), err.__cause__, err.__context__])


def is_database_unavailable(exc: BaseException) -> bool:
    """True when the error means the database cannot be reached now (as opposed to a bad statement)."""
    for err in exception_chain(exc):
        if isinstance(err, (sa_exc.TimeoutError, OperationalError, InterfaceError)):
            return True
        # A socket error or timeout means the database only if the driver raised it: a handler's HTTP timeout
        # or missing file is the message's problem, to be retried a few times and then dead-lettered.
        if isinstance(err, (OSError, TimeoutError)) and _raised_in_driver(err):
            return True
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return True
        # The driver's "this connection cannot run a statement now": a pooled connection whose server process was
        # just terminated (an outage, a failover), used before the driver saw its socket close.
        if isinstance(err, asyncpg.InternalClientError) and _raised_in_driver(err):
            return True
        state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(state, str) and (
            state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES) or state in _UNAVAILABLE_SQLSTATES
        ):
            return True
    return False


async def listen(database_url: str, channel: str, on_notify: Callable[[str], None]) -> None:
    """LISTEN on `channel` for as long as the task runs, reconnecting when the connection drops; `on_notify` gets
    each notification's payload."""
    while True:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
        except Exception as exc:
            log.debug("listener for %s cannot connect: %s", channel, exc)
            await asyncio.sleep(2)
            continue
        closed = asyncio.Event()
        conn.add_termination_listener(lambda *_, closed=closed: closed.set())
        try:
            await conn.add_listener(channel, lambda _conn, _pid, _channel, payload: on_notify(payload))
            await closed.wait()
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
