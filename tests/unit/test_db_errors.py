"""Which errors mean "the database is unavailable" (retry, 503) and which are the message's or request's fault."""

from __future__ import annotations

import asyncio

import pytest

from shared.db import is_database_unavailable


class FakeSqlstateError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize("state", ["08006", "08001", "57P01", "57P03", "53300", "55000", "40P01"])
def test_connection_class_sqlstates_mean_unavailable(state: str) -> None:
    assert is_database_unavailable(FakeSqlstateError(state))


@pytest.mark.parametrize("state", ["23505", "22P02", "42P01", "40001", "P0001"])
def test_statement_errors_do_not(state: str) -> None:
    assert not is_database_unavailable(FakeSqlstateError(state))


def test_an_os_error_raised_outside_the_driver_is_not_the_database() -> None:
    for err in (FileNotFoundError("x"), TimeoutError(), ConnectionRefusedError()):
        try:
            raise err
        except OSError as caught:
            assert not is_database_unavailable(caught)


def test_an_os_error_raised_inside_the_driver_is() -> None:
    import asyncpg

    async def connect() -> None:
        await asyncpg.connect("postgresql://nobody@127.0.0.1:1/none", timeout=2)

    with pytest.raises(OSError) as info:
        asyncio.run(connect())
    assert is_database_unavailable(info.value)


def test_the_cause_chain_is_followed() -> None:
    try:
        try:
            raise FakeSqlstateError("08006")
        except FakeSqlstateError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_database_unavailable(outer)


def test_the_drivers_connection_state_error_counts_only_when_the_driver_raised_it() -> None:
    # Raised by asyncpg on a pooled connection whose server process was terminated (test_intake_outages shows
    # that case answered 503); raised by anyone else, it says nothing about the database.
    import asyncpg

    try:
        raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    except asyncpg.InternalClientError as caught:
        assert not is_database_unavailable(caught)
