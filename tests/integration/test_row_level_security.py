"""The services' connections stay in their row-level-security role whatever their transactions do."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared.db import make_engine, make_session_factory, unit_of_work
from shared.scope import app_role, source_settings
from tests.conftest import AppClient, SourceCredentials
from tests.factories import warning_record


@pytest.mark.parametrize("service", ["intake", "dispatch", "feedback"])
async def test_a_pooled_connection_keeps_its_role_after_a_rollback(database_url: str, service: str) -> None:
    # Regression: a role set with SET ROLE inside the connection's first transaction was undone by a
    # rollback, handing the connection back to its (superuser) login role and bypassing every policy.
    engine = make_engine(database_url, pool_size=1, role=app_role(service))
    try:
        factory = make_session_factory(engine)
        with pytest.raises(sa.exc.DBAPIError):
            async with unit_of_work(factory) as session:
                await session.exec(sa.text("SELECT 1 / 0"))  # type: ignore[call-overload]
        for _ in range(3):
            async with unit_of_work(factory) as session:
                user = (await session.exec(sa.text("SELECT current_user"))).scalar_one()  # type: ignore[call-overload]
            assert user == app_role(service)
    finally:
        await engine.dispose()


async def test_without_a_scope_no_warning_is_visible(
    database_url: str, intake: AppClient, source: SourceCredentials
) -> None:
    assert (await intake.post("/v1/warnings", json=warning_record(), headers=source.headers)).status_code == 202
    engine = make_engine(database_url, pool_size=1, role=app_role("intake"))
    try:
        factory = make_session_factory(engine)
        async with unit_of_work(factory) as session:
            unscoped = (await session.exec(sa.text("SELECT count(*) FROM intake.warnings"))).scalar_one()  # type: ignore[call-overload]
        async with unit_of_work(factory, source_settings("no-such-source")) as session:
            stranger = (await session.exec(sa.text("SELECT count(*) FROM intake.warnings"))).scalar_one()  # type: ignore[call-overload]
        async with unit_of_work(factory, source_settings(source.name)) as session:
            own = (await session.exec(sa.text("SELECT count(*) FROM intake.warnings"))).scalar_one()  # type: ignore[call-overload]
    finally:
        await engine.dispose()
    assert (unscoped, stranger, own) == (0, 0, 1)
