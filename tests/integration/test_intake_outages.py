"""Outages: with the broker down intake keeps accepting and loses nothing; with the database down it says 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from shared.devinfra import Broker
from shared.events import Topic
from shared.kafka import ensure_topics
from tests.conftest import AppClient, SourceCredentials
from tests.factories import warning_record
from tests.kafka_helpers import read_envelopes, with_warning_ids


@pytest.mark.restarts_broker
async def test_with_the_broker_down_records_are_accepted_and_published_when_it_returns(
    intake: AppClient, source: SourceCredentials, broker: Broker
) -> None:
    broker.stop()
    try:
        ids = set()
        for _ in range(200):
            response = await intake.post("/v1/warnings", json=warning_record(), headers=source.headers)
            assert response.status_code == 202, response.text
            ids.add(response.json()["id"])
    finally:
        broker.start()  # it comes back empty, as a cluster that lost its data would
        await ensure_topics(broker.bootstrap)

    envelopes = await read_envelopes(broker.bootstrap, Topic.WARNINGS_RECEIVED, with_warning_ids(ids), timeout=120)
    published = [e.data["warning_id"] for e in envelopes if e.data["warning_id"] in ids]
    assert set(published) == ids


@asynccontextmanager
async def database_refusing_connections(admin_url: str, database_url: str) -> AsyncIterator[None]:
    """The service's database stops accepting connections and its existing ones are cut, as in an outage."""
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_with_the_database_down_intake_answers_503_and_stores_nothing_it_did_not_acknowledge(
    intake: AppClient, source: SourceCredentials, pg_admin_url: str, database_url: str
) -> None:
    warm = await intake.post("/v1/warnings", json=warning_record(), headers=source.headers)
    assert warm.status_code == 202  # the source is now cached: the outage hits the write itself

    refused = [warning_record() for _ in range(10)]
    async with database_refusing_connections(pg_admin_url, database_url):
        for record in refused:
            response = await intake.post("/v1/warnings", json=record, headers=source.headers)
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) > 0
        ready = await intake.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unavailable"

    # Back up: the refused records were never stored, so posting them again creates them, not duplicates.
    for record in refused:
        response = await intake.post("/v1/warnings", json=record, headers=source.headers)
        assert response.status_code == 202, response.text
        assert response.json()["duplicate"] is False


async def test_a_failed_commit_is_never_answered_202(
    intake: AppClient, source: SourceCredentials, database_url: str
) -> None:
    # A deferred constraint trigger fails at COMMIT, after the INSERT succeeded: the moment between storing
    # and acknowledging. The connection-failure SQLSTATE makes it look like the database went away then.
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            """CREATE OR REPLACE FUNCTION intake.fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF NEW.external_id LIKE 'FAIL-COMMIT-%' THEN
                 RAISE EXCEPTION 'commit lost' USING ERRCODE = '08006'; END IF; RETURN NULL; END $$;
               CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT ON intake.warnings
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION intake.fail_commit();"""
        )
        record = warning_record(external_id="FAIL-COMMIT-1")
        response = await intake.post("/v1/warnings", json=record, headers=source.headers)
        assert response.status_code == 503, response.text
        stored = await conn.fetchval("SELECT count(*) FROM intake.warnings WHERE external_id = 'FAIL-COMMIT-1'")
        assert stored == 0
    finally:
        await conn.execute("DROP TRIGGER IF EXISTS fail_commit ON intake.warnings; DROP FUNCTION intake.fail_commit()")
        await conn.close()
