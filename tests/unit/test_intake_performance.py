"""What intake's speed rests on (the NUL pre-check, the batch insert's column list) and the pure parts of its
benchmark (the records it posts, percentiles, the load generator's HTTP parsing)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.warnings import service
from services.intake.warnings.models import Warning, WarningCreate
from services.intake.warnings.policy import canonical, digest, may_hold_nul
from services.intake.warnings.repository import _COLUMNS
from shared.events import Envelope, SubjectData, WarningReceivedV1
from shared.problems import nul_fields
from tests.bench import load
from tests.bench.intake import BATCH, Records, accepted_in_batch, dist

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)
RECORDS = Records("run1", ("370202-011", "370202-012"), "2026-11-21T08:15:00+08:00")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@PROPERTY
@given(json_values)
def test_the_nul_pre_check_never_misses_a_nul_and_passes_what_has_no_escapes(value: object) -> None:
    parsed = orjson.loads(orjson.dumps(value))  # as intake receives it
    if nul_fields(parsed):
        assert may_hold_nul(parsed)
    if b"\\" not in orjson.dumps(parsed):  # nothing escaped at all, so certainly no \u0000
        assert not may_hold_nul(parsed)


def test_the_nul_pre_check_spares_ordinary_records_and_walks_what_it_cannot_write() -> None:
    assert not may_hold_nul(orjson.loads(RECORDS.one(1, 1)))
    assert may_hold_nul({"subject": {"name": "张\x00三"}})
    assert may_hold_nul({"note": "a backslash then u0000: \\u0000"})  # a false alarm costs only the walk
    assert may_hold_nul(orjson.loads("[" * 300 + "]" * 300))  # orjson writes at most 254 levels back


def test_the_store_writes_every_column_of_the_warnings_table() -> None:
    table = Warning.__table__  # type: ignore[attr-defined]
    assert sorted(["source", *_COLUMNS]) == sorted(c.name for c in table.columns)  # the source is one value


def test_a_warning_event_built_in_one_pass_is_the_one_the_models_build() -> None:
    record = WarningCreate.model_validate_json(RECORDS.one(1, 7))
    form = canonical(record)
    now = datetime.now(UTC)
    row = service._row(
        record, form, source="bank-a", hashed=digest(form), now=now, known_areas={"370202-011"}, secret="k"
    )
    event_id, value = service._event(row)
    data = WarningReceivedV1(
        warning_id=row["id"], source="bank-a", external_id=record.external_id, issued_at=record.issued_at,
        received_at=now, subject=SubjectData.model_validate(form["subject"]), subject_key=row["subject_key"],
        area_code=record.area_code, assigned=row["assigned"], fraud_type=record.fraud_type,
        risk_level=record.risk_level, in_progress=record.in_progress, amount_at_risk=record.amount_at_risk,
        evidence=form["evidence"],
    )  # fmt: skip
    modelled = Envelope.new(WarningReceivedV1.TYPE, service.EVENT_SOURCE, data, subject=str(row["id"]))
    fast = orjson.loads(value)
    assert fast["id"] == str(event_id)
    assert {k: v for k, v in fast.items() if k not in ("id", "time")} == {
        k: v for k, v in orjson.loads(modelled.to_bytes()).items() if k not in ("id", "time")
    }
    assert Envelope.model_validate_json(value).time.utcoffset() == timedelta(0)
    assert fast["time"].endswith("Z")  # as pydantic writes UTC


def test_bench_records_are_valid_and_distinct() -> None:
    records = [WarningCreate.model_validate_json(RECORDS.one(phase, n)) for phase in (1, 2) for n in range(200)]
    assert len({r.external_id for r in records}) == len(records)
    assert len({r.subject.phone for r in records}) == len(records)
    assert {r.area_code for r in records} == {"370202-011", "370202-012"}
    assert {r.risk_level for r in records} == {"low", "medium", "high", "critical"}
    batch = orjson.loads(RECORDS.batch(3, 2))["warnings"]
    assert len(batch) == BATCH
    assert batch[0]["external_id"] == f"BENCH-run1-3-{2 * BATCH}"


def test_a_batch_answer_counts_the_records_it_accepted() -> None:
    body = orjson.dumps({"results": [], "accepted": 998, "duplicate": 1, "rejected": 1})
    assert accepted_in_batch(load.Response(200, body)) == 998
    assert accepted_in_batch(load.Response(429, b'{"accepted": 1000}')) == 0


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert load.percentile(values, 50) == 50
    assert load.percentile(values, 99) == 99
    assert load.percentile(values, 100) == 100
    assert load.percentile([3.0], 99) == 3
    assert math.isnan(load.percentile([], 50))


def test_what_never_completed_counts_as_slower_than_everything() -> None:
    d = dist([0.010] * 98, [2.5, 3.0])
    assert d.ms["p50"] == pytest.approx(10)
    assert d.ms["p99"] == math.inf
    assert d.cell("p99") == "> 2,500"
    assert d.cell("p50") == "10"
    assert (d.count, d.missing) == (100, 2)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request once with a Content-Length body, once chunked, as uvicorn may."""
    for response in (
        b'HTTP/1.1 202 Accepted\r\ncontent-length: 7\r\n\r\n{"a":1}',
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{"b\r\n4\r\n":2}\r\n0\r\n\r\n',
    ):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert await reader.readexactly(length) == b"{}"
        writer.write(response)
    writer.close()


@pytest.fixture
async def server() -> AsyncIterator[int]:
    srv = await asyncio.start_server(_answer, "127.0.0.1", 0)
    async with srv:
        yield srv.sockets[0].getsockname()[1]


async def test_the_client_reads_both_framings_on_one_connection(server: int) -> None:
    conn = await load.Connection.open(server)
    request = load.http_request("POST", "/x", port=server, headers={"Content-Type": "application/json"}, body=b"{}")
    try:
        assert await conn.exchange(request) == load.Response(202, b'{"a":1}')
        assert await conn.exchange(request) == load.Response(200, b'{"b":2}')
    finally:
        await conn.close()
