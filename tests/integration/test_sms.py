"""SMS: the development gateway's API, and `HttpSmsProvider` talking to it over real HTTP.

The gateway's own API is exercised in-process (ASGI); the provider talks to the gateway served by uvicorn on a
free port, so timeouts, connection errors and retries are the real ones. Nothing waits by sleeping: every wait
polls the gateway's counters with a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from services.dispatch.sms.provider import (
    MAX_BATCH,
    HttpSmsProvider,
    SmsMessage,
    SmsProvider,
    SmsResult,
    retry_after_seconds,
    sms_text,
)
from services.smsgw.main import create_app
from services.smsgw.settings import SmsGatewaySettings
from shared.devinfra import free_port, wait_for
from shared.events import FRAUD_TYPES
from shared.personal import mask_phone

PROBLEM_JSON = "application/problem+json"
_numbers = itertools.count(1)


def next_phone() -> str:
    """A distinct mainland mobile number per call, so tests never see each other's messages."""
    return f"1391234{next(_numbers):04d}"


def key() -> str:
    return f"test-{uuid.uuid4()}"


# --- the reminder texts (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize("fraud_type", FRAUD_TYPES)
def test_every_fraud_type_has_a_reminder_without_personal_data(fraud_type: str) -> None:
    text = sms_text(fraud_type)
    assert text.startswith("【反诈提醒】")
    assert "96110" in text
    assert not any(c.isdigit() for c in text.replace("96110", "")), text
    assert 1 <= len(text) <= 500  # what the gateway (and a long SMS) accepts


def test_reminders_are_specific_and_unknown_types_get_the_general_one() -> None:
    texts = {t: sms_text(t) for t in FRAUD_TYPES}
    assert len(set(texts.values())) == len(FRAUD_TYPES)
    assert "刷单返利" in texts["task_rebate"]
    assert "冒充公检法" in texts["impersonate_officials"]
    assert "杀猪盘" in texts["romance"]
    assert sms_text("a-type-from-the-future") == texts["other"]


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    from datetime import UTC, datetime

    now = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Sat, 21 Nov 2026 08:00:07 GMT", now=now) == 7.0
    assert retry_after_seconds("Sat, 21 Nov 2026 07:00:00 GMT", now=now) == 0.0


# --- the gateway's API, in-process ---------------------------------------------------------------------------


@pytest.fixture
async def gw() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SmsGatewaySettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://smsgw") as client:
        yield client


async def control(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/control")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def messages(client: httpx.AsyncClient, to: str | None = None) -> list[dict[str, Any]]:
    response = await client.get("/v1/messages", params={"to": to} if to else None)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_gateway_health(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_gateway_records_a_message_once_per_key(gw: httpx.AsyncClient) -> None:
    phone, k = next_phone(), key()
    body = {"to": phone, "text": sms_text("loan")}
    first = await gw.post("/v1/messages", json=body, headers={"Idempotency-Key": k})
    assert first.status_code == 201
    sent = first.json()
    assert set(sent) == {"id", "to", "text", "received_at", "idempotency_key"}
    assert (sent["to"], sent["text"], sent["idempotency_key"]) == (phone, body["text"], k)

    again = await gw.post("/v1/messages", json=body, headers={"Idempotency-Key": k})
    assert again.status_code == 200
    assert again.json() == sent
    assert await messages(gw, phone) == [sent]
    assert (await control(gw))["requests"] == 2


async def test_gateway_refuses_a_key_reused_for_another_message(gw: httpx.AsyncClient) -> None:
    phone, k = next_phone(), key()
    assert (await gw.post("/v1/messages", json={"to": phone, "text": "a"}, headers={"Idempotency-Key": k})).is_success
    conflict = await gw.post("/v1/messages", json={"to": phone, "text": "b"}, headers={"Idempotency-Key": k})
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == PROBLEM_JSON
    assert conflict.json()["status"] == 409
    assert [m["text"] for m in await messages(gw, phone)] == ["a"]


@pytest.mark.parametrize("headers", [{}, {"Idempotency-Key": ""}, {"Idempotency-Key": "k" * 201}])
async def test_gateway_requires_an_idempotency_key(gw: httpx.AsyncClient, headers: dict[str, str]) -> None:
    phone = next_phone()
    response = await gw.post("/v1/messages", json={"to": phone, "text": "hi"}, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "Idempotency-Key" in response.json()["title"]
    assert await messages(gw, phone) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "1380013800a", "text": "hi"}, "to"),
        ({"to": "1234", "text": "hi"}, "to"),
        ({"to": "1" * 21, "text": "hi"}, "to"),
        ({"to": "+12025550123", "text": "hi"}, "to"),
        ({"to": 13800138000, "text": "hi"}, "to"),
        ({"text": "hi"}, "to"),
        ({"to": "13800138000", "text": ""}, "text"),
        ({"to": "13800138000", "text": "字" * 501}, "text"),
        ({"to": "13800138000"}, "text"),
    ],
)
async def test_gateway_validates_the_message(gw: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    response = await gw.post("/v1/messages", json=body, headers={"Idempotency-Key": key()})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await messages(gw) == []


async def test_gateway_accepts_the_international_prefix(gw: httpx.AsyncClient) -> None:
    response = await gw.post(
        "/v1/messages", json={"to": "+8613800138000", "text": "hi"}, headers={"Idempotency-Key": key()}
    )
    assert response.status_code == 201


async def test_gateway_lists_newest_last_filtered_and_limited(gw: httpx.AsyncClient) -> None:
    phone, other = next_phone(), next_phone()
    for i in range(5):
        sent = await gw.post("/v1/messages", json={"to": phone, "text": f"m{i}"}, headers={"Idempotency-Key": key()})
        assert sent.status_code == 201
    await gw.post("/v1/messages", json={"to": other, "text": "x"}, headers={"Idempotency-Key": key()})

    assert [m["text"] for m in await messages(gw, phone)] == [f"m{i}" for i in range(5)]
    limited = await gw.get("/v1/messages", params={"to": phone, "limit": 2})
    assert [m["text"] for m in limited.json()["items"]] == ["m3", "m4"]
    assert len(await messages(gw)) == 6
    assert (await gw.get("/v1/messages", params={"limit": 0})).status_code == 422

    assert (await gw.delete("/v1/messages")).status_code == 204
    assert await messages(gw) == []
    assert (await control(gw))["requests"] == 0


async def test_gateway_injects_failures_without_recording(gw: httpx.AsyncClient) -> None:
    assert (await control(gw))["fail_rate"] == 0.0
    set_to = await gw.post("/v1/control", json={"fail_rate": 1, "fail_status": 500, "retry_after_s": 2})
    assert set_to.status_code == 200
    assert set_to.json()["fail_status"] == 500

    phone = next_phone()
    failed = await gw.post("/v1/messages", json={"to": phone, "text": "hi"}, headers={"Idempotency-Key": key()})
    assert failed.status_code == 500
    assert failed.headers["content-type"] == PROBLEM_JSON
    assert failed.headers["retry-after"] == "2"
    assert await messages(gw, phone) == []
    state = await control(gw)
    assert (state["requests"], state["failures"], state["in_flight"]) == (1, 1, 0)

    assert (await gw.post("/v1/control", json={})).json()["fail_rate"] == 0.0
    ok = await gw.post("/v1/messages", json={"to": phone, "text": "hi"}, headers={"Idempotency-Key": key()})
    assert ok.status_code == 201


@pytest.mark.parametrize(
    "body",
    [{"fail_rate": 1.5}, {"fail_rate": -0.1}, {"fail_status": 404}, {"fail_status": 600}, {"delay_s": 61}, {"x": 1}],
)
async def test_gateway_refuses_invalid_fault_settings(gw: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await gw.post("/v1/control", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_gateway_failures_are_reproducible_with_a_seed(gw: httpx.AsyncClient) -> None:
    async def outcomes() -> list[int]:
        assert (await gw.post("/v1/control", json={"fail_rate": 0.5, "seed": 7})).status_code == 200
        statuses = []
        for _ in range(20):
            r = await gw.post(
                "/v1/messages", json={"to": next_phone(), "text": "x"}, headers={"Idempotency-Key": key()}
            )
            statuses.append(r.status_code)
        return statuses

    first, second = await outcomes(), await outcomes()
    assert first == second
    assert set(first) == {201, 503}


def item(phone: str, text: str = "hi", k: str | None = None) -> dict[str, Any]:
    return {"idempotency_key": k or key(), "to": phone, "text": text}


async def test_gateway_batch_answers_each_message_as_its_single_post_would(gw: httpx.AsyncClient) -> None:
    phone, k = next_phone(), key()
    single = await gw.post("/v1/messages", json={"to": phone, "text": "first"}, headers={"Idempotency-Key": k})
    assert single.status_code == 201
    batch = [item(phone, "new"), item(phone, "first", k), item(phone, "other", k), item("1380013800a"), item(phone)]
    batch[-1].pop("text")

    response = await gw.post("/v1/messages/batch", json={"messages": batch})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["code"] for r in results] == [201, 200, 409, 422, 422]
    assert results[1]["body"] == single.json()
    assert results[2]["body"]["type"].endswith("idempotency-conflict")
    assert [e["field"] for e in results[3]["body"]["errors"]] == ["messages[3].to"]
    assert [e["field"] for e in results[4]["body"]["errors"]] == ["messages[4].text"]
    recorded = await messages(gw, phone)
    assert [m["text"] for m in recorded] == ["first", "new"]
    assert results[0]["body"] == recorded[1]
    assert (await control(gw))["requests"] == 1 + len(batch)


@pytest.mark.parametrize(
    "body", [{}, {"messages": []}, {"messages": "x"}, {"messages": [item("13800138000")] * 101}, {"messages": [1]}]
)
async def test_gateway_refuses_a_malformed_batch_whole(gw: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await gw.post("/v1/messages/batch", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert [e["field"].split(".")[0].split("[")[0] for e in response.json()["errors"]] == ["messages"]
    assert await messages(gw) == []


async def test_gateway_batch_fails_whole_without_recording(gw: httpx.AsyncClient) -> None:
    assert (await gw.post("/v1/control", json={"fail_rate": 1, "retry_after_s": 3})).status_code == 200
    phone = next_phone()
    failed = await gw.post("/v1/messages/batch", json={"messages": [item(phone), item(phone)]})
    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "3"
    assert await messages(gw, phone) == []
    state = await control(gw)
    assert (state["requests"], state["failures"], state["in_flight"]) == (2, 2, 0)


# --- the provider against the gateway served by uvicorn ------------------------------------------------------


@dataclass
class Gateway:
    url: str
    client: httpx.AsyncClient  # for the test's own look at the gateway, not the provider's

    async def control(self, **settings: Any) -> None:
        response = await self.client.post("/v1/control", json=settings)
        assert response.status_code == 200, response.text

    async def state(self) -> dict[str, Any]:
        return await control(self.client)

    async def messages(self, to: str) -> list[dict[str, Any]]:
        return await messages(self.client, to)

    async def wait_until(self, name: str, at_least: int) -> None:
        async def reached() -> bool:
            return int((await self.state())[name]) >= at_least

        await wait_for(reached, timeout=20, message=f"the gateway's {name} to reach {at_least}")

    async def settled(self) -> None:
        """Every request the gateway received has been answered (a timed-out attempt still finishes there)."""

        async def idle() -> bool:
            return int((await self.state())["in_flight"]) == 0

        await wait_for(idle, timeout=30, message="the gateway to finish every request")


@pytest.fixture(scope="module")
async def served_gateway() -> AsyncIterator[Gateway]:
    port = free_port()
    app = create_app(SmsGatewaySettings())
    # log_config=None: leave the test process's logging (and caplog) alone.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def healthy() -> bool:
            if task.done():
                task.result()  # the server failed to start: say why
                raise RuntimeError("the gateway's server stopped")
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(healthy, timeout=20, message="the SMS gateway to answer /healthz")
        try:
            yield Gateway(url, client)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def gateway(served_gateway: Gateway) -> AsyncIterator[Gateway]:
    await served_gateway.settled()
    assert (await served_gateway.client.delete("/v1/messages")).status_code == 204
    await served_gateway.control()
    yield served_gateway
    await served_gateway.control()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The provider's client, as an app's lifespan would own it."""
    async with httpx.AsyncClient() as client:
        yield client


def provider(http: httpx.AsyncClient, gateway: Gateway, **options: Any) -> HttpSmsProvider:
    return HttpSmsProvider(http, gateway.url, **{"total_deadline_s": 20.0, "attempt_timeout_s": 2.0, **options})


async def test_a_message_is_sent_once_and_recorded(http: httpx.AsyncClient, gateway: Gateway) -> None:
    phone, text = next_phone(), sms_text("investment")
    sms: SmsProvider = provider(http, gateway, api_key="dev-key")
    result = await sms.send(idempotency_key=key(), phone=phone, text=text)

    assert result.accepted and not result.retryable and result.error is None
    recorded = await gateway.messages(phone)
    assert [(m["id"], m["to"], m["text"]) for m in recorded] == [(result.provider_id, phone, text)]
    assert (await gateway.state())["requests"] == 1


async def test_503s_are_retried_until_accepted_with_one_message(http: httpx.AsyncClient, gateway: Gateway) -> None:
    await gateway.control(fail_rate=1)
    phone = next_phone()
    sending = asyncio.create_task(provider(http, gateway).send(idempotency_key=key(), phone=phone, text="x"))
    await gateway.wait_until("failures", 2)
    await gateway.control()  # the gateway recovers

    result = await sending
    assert result.accepted, result
    await gateway.settled()
    recorded = await gateway.messages(phone)
    assert [m["id"] for m in recorded] == [result.provider_id]
    state = await gateway.state()
    assert state["requests"] == state["failures"] + 1 >= 3


async def test_seeded_half_failure_rate_ends_with_one_message(http: httpx.AsyncClient, gateway: Gateway) -> None:
    seed = 1
    assert random.Random(seed).random() < 0.5  # the gateway's first draw with this seed fails
    await gateway.control(fail_rate=0.5, seed=seed)
    phone = next_phone()
    result = await provider(http, gateway).send(idempotency_key=key(), phone=phone, text="x")

    assert result.accepted, result
    assert [m["id"] for m in await gateway.messages(phone)] == [result.provider_id]
    state = await gateway.state()
    assert state["failures"] >= 1
    assert state["requests"] == state["failures"] + 1


@pytest.mark.parametrize("phone", ["+12025550123", "1380013800a"])
async def test_a_4xx_is_not_retried(http: httpx.AsyncClient, gateway: Gateway, phone: str) -> None:
    result = await provider(http, gateway).send(idempotency_key=key(), phone=phone, text="x")

    assert not result.accepted and not result.retryable
    assert result.error is not None and "422" in result.error and "to" in result.error
    assert phone not in result.error
    assert (await gateway.state())["requests"] == 1


async def test_an_idempotency_conflict_is_not_retried(http: httpx.AsyncClient, gateway: Gateway) -> None:
    sms, phone, k = provider(http, gateway), next_phone(), key()
    assert (await sms.send(idempotency_key=k, phone=phone, text="first")).accepted
    result = await sms.send(idempotency_key=k, phone=phone, text="second")

    assert (result.accepted, result.retryable) == (False, False)
    assert result.error is not None and "409" in result.error
    assert (await gateway.state())["requests"] == 2
    assert [m["text"] for m in await gateway.messages(phone)] == ["first"]


async def test_the_total_deadline_is_honoured(http: httpx.AsyncClient, gateway: Gateway) -> None:
    await gateway.control(fail_rate=1)
    phone = next_phone()
    started = time.monotonic()
    result = await provider(http, gateway, total_deadline_s=2.0, attempt_timeout_s=0.5).send(
        idempotency_key=key(), phone=phone, text="x"
    )
    elapsed = time.monotonic() - started

    assert result == SmsResult(accepted=False, provider_id=None, error=result.error, retryable=True)
    assert result.error is not None and "503" in result.error
    assert elapsed < 2.0 + 1.5, elapsed  # no attempt starts, nor sleeps towards one, past the deadline
    assert (await gateway.state())["requests"] >= 2  # it did retry within the deadline
    assert await gateway.messages(phone) == []


async def test_a_slow_gateway_times_out_and_is_retried(
    http: httpx.AsyncClient, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await gateway.control(delay_s=5)
    phone = next_phone()
    started = time.monotonic()
    sending = asyncio.create_task(
        provider(http, gateway, attempt_timeout_s=0.3).send(idempotency_key=key(), phone=phone, text="x")
    )
    await gateway.wait_until("requests", 1)
    await gateway.control()  # later attempts are answered at once; the first one still takes 5 s

    result = await sending
    elapsed = time.monotonic() - started
    assert result.accepted, result
    assert elapsed < 5, elapsed  # it did not wait for the slow answer
    assert any("no answer within 0.3s" in r.getMessage() for r in caplog.records)

    # The timed-out attempt reaches the gateway too, with the same key: it records nothing new.
    await gateway.settled()
    assert [m["id"] for m in await gateway.messages(phone)] == [result.provider_id]
    assert (await gateway.state())["requests"] >= 2


async def test_retry_after_on_429_is_honoured(http: httpx.AsyncClient, gateway: Gateway) -> None:
    await gateway.control(fail_rate=1, fail_status=429, retry_after_s=1)
    phone = next_phone()
    started = time.monotonic()
    sending = asyncio.create_task(provider(http, gateway).send(idempotency_key=key(), phone=phone, text="x"))
    await gateway.wait_until("failures", 1)
    await gateway.control()

    result = await sending
    assert result.accepted, result
    # Without Retry-After the first backoff is at most 0.2 s.
    assert time.monotonic() - started >= 1.0
    assert len(await gateway.messages(phone)) == 1


async def test_a_retry_after_past_the_deadline_ends_the_send_at_once(http: httpx.AsyncClient, gateway: Gateway) -> None:
    await gateway.control(fail_rate=1, fail_status=429, retry_after_s=3600)
    started = time.monotonic()
    result = await provider(http, gateway, total_deadline_s=3.0).send(
        idempotency_key=key(), phone=next_phone(), text="x"
    )

    assert (result.accepted, result.retryable) == (False, True)
    assert result.error is not None and "429" in result.error
    assert time.monotonic() - started < 3.0
    assert (await gateway.state())["requests"] == 1


async def test_an_unreachable_gateway_is_retried_until_the_deadline(http: httpx.AsyncClient) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    sms = HttpSmsProvider(http, nobody, total_deadline_s=1.0, attempt_timeout_s=0.5)
    result = await sms.send(idempotency_key=key(), phone=next_phone(), text="x")

    assert (result.accepted, result.retryable) == (False, True)
    assert result.error is not None and "connection failed" in result.error


async def test_the_same_key_twice_records_one_message(http: httpx.AsyncClient, gateway: Gateway) -> None:
    sms, phone, k = provider(http, gateway), next_phone(), key()
    first = await sms.send(idempotency_key=k, phone=phone, text=sms_text("romance"))
    second = await sms.send(idempotency_key=k, phone=phone, text=sms_text("romance"))

    assert first.accepted and second.accepted
    assert first.provider_id == second.provider_id is not None
    assert [m["id"] for m in await gateway.messages(phone)] == [first.provider_id]


async def test_the_phone_never_appears_in_errors_or_logs(
    http: httpx.AsyncClient, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    phone = next_phone()
    sms = provider(http, gateway, total_deadline_s=1.0, attempt_timeout_s=0.5)
    results = [await sms.send(idempotency_key=key(), phone=phone, text="x")]  # accepted
    await gateway.control(fail_rate=1)
    results.append(await sms.send(idempotency_key=key(), phone=phone, text="x"))  # deadline
    await gateway.control()
    bad = phone + "a"
    results.append(await sms.send(idempotency_key=key(), phone=bad, text="x"))  # refused

    assert [r.accepted for r in results] == [True, False, False]
    for result in results:
        assert phone not in (result.error or "")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert mask_phone(phone) in logged  # the lines are there, masked
    assert phone not in logged and phone[3:] not in logged


async def test_a_gateway_echoing_the_number_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    """A carrier that quotes the number in its error: the provider's result and logs still do not."""
    caplog.set_level(logging.DEBUG)
    phone = "13912345678"

    def carrier(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"title": "Bad number", "detail": f"{phone} is barred"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(carrier)) as client:
        result = await HttpSmsProvider(client, "http://carrier").send(idempotency_key=key(), phone=phone, text="x")

    assert (result.accepted, result.retryable) == (False, False)
    assert result.error is not None and "139****5678 is barred" in result.error
    assert phone not in "\n".join(r.getMessage() for r in caplog.records)


# --- send_many: batches ---------------------------------------------------------------------------------------


def batch_of(phones: list[str], text: str = "x") -> list[SmsMessage]:
    return [SmsMessage(idempotency_key=key(), phone=phone, text=text) for phone in phones]


async def test_many_messages_go_in_batches_each_recorded_once(http: httpx.AsyncClient, gateway: Gateway) -> None:
    phones = [next_phone() for _ in range(MAX_BATCH + 50)]
    sent = batch_of(phones)
    conflict = SmsMessage(idempotency_key=sent[0].idempotency_key, phone=phones[0], text="another text")
    invalid = SmsMessage(idempotency_key=key(), phone="+12025550123", text="x")
    sms: SmsProvider = provider(http, gateway)

    results = await sms.send_many([*sent, invalid])
    assert all(r.accepted and r.provider_id for r in results[:-1]), results
    assert (results[-1].accepted, results[-1].retryable) == (False, False)
    for phone, result in zip(phones, results, strict=False):
        assert [m["id"] for m in await gateway.messages(phone)] == [result.provider_id]
    assert (await gateway.state())["requests"] == len(sent) + 1

    again = await sms.send_many([sent[0], conflict])
    assert again[0] == results[0]  # the same key: the first message, not a second one
    assert (again[1].accepted, again[1].retryable) == (False, False)
    assert again[1].error is not None and "409" in again[1].error
    assert len(await gateway.messages(phones[0])) == 1


async def test_a_failing_batch_is_retried_whole_until_accepted_once(http: httpx.AsyncClient, gateway: Gateway) -> None:
    await gateway.control(fail_rate=1)
    phones = [next_phone() for _ in range(3)]
    sending = asyncio.create_task(provider(http, gateway).send_many(batch_of(phones)))
    await gateway.wait_until("failures", 2 * len(phones))  # two failed attempts of the batch
    await gateway.control()

    results = await sending
    assert all(r.accepted for r in results), results
    for phone, result in zip(phones, results, strict=True):
        assert [m["id"] for m in await gateway.messages(phone)] == [result.provider_id]


async def test_a_batch_past_the_deadline_is_retryable_for_every_message(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    await gateway.control(fail_rate=1)
    results = await provider(http, gateway, total_deadline_s=0.5).send_many(batch_of([next_phone(), next_phone()]))
    assert [(r.accepted, r.retryable) for r in results] == [(False, True)] * 2
    assert all(r.error and r.error.startswith("gave up after") for r in results)


def carrier_without_batches(seen: list[str]) -> httpx.MockTransport:
    """A carrier that only takes one message per request, as a gateway before batches did."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path != "/v1/messages":
            return httpx.Response(404, json={"title": "Not Found"})
        return httpx.Response(201, json={"id": request.headers["idempotency-key"]})

    return httpx.MockTransport(answer)


async def test_a_gateway_without_batches_gets_one_message_per_request() -> None:
    seen: list[str] = []
    async with httpx.AsyncClient(transport=carrier_without_batches(seen)) as client:
        sms = HttpSmsProvider(client, "http://carrier")
        first, second = batch_of(["13912345678", "13912345679"]), batch_of(["13912345670", "13912345671"])
        results = [*await sms.send_many(first), *await sms.send_many(second)]

    assert [r.provider_id for r in results] == [m.idempotency_key for m in [*first, *second]]
    assert seen == ["/v1/messages/batch"] + ["/v1/messages"] * 4  # asked for a batch once, then never again


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"results": [{"code": 503, "body": {}}, {"code": 201, "body": {"id": "b"}}]}, [(False, True), (True, False)]),
        ({"results": [{"code": 201, "body": {"id": "a"}}]}, [(False, True), (False, True)]),
        ({"results": [{"code": "201"}, {"code": 201}]}, [(False, True), (False, True)]),
        ({"nothing": []}, [(False, True), (False, True)]),
    ],
)
async def test_a_batch_answer_is_trusted_only_when_it_accounts_for_each_message(
    answer: dict[str, Any], expected: list[tuple[bool, bool]]
) -> None:
    """An item's own 5xx is retryable for that message alone; an answer that does not say what became of every
    message is retried whole (harmless: each message keeps its key), here until the deadline."""

    def carrier(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    async with httpx.AsyncClient(transport=httpx.MockTransport(carrier)) as client:
        sms = HttpSmsProvider(client, "http://carrier", total_deadline_s=0.3)
        results = await sms.send_many(batch_of(["13912345678", "13912345679"]))
    assert [(r.accepted, r.retryable) for r in results] == expected


async def test_a_batch_refused_or_echoing_numbers_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    phones = ["13912345678", "13912345679"]

    def carrier(request: httpx.Request) -> httpx.Response:
        if len(request.content) > 10_000:
            return httpx.Response(413, json={"title": "Too large"})
        body = {"title": "Bad number", "detail": f"{phones[0]} is barred"}
        return httpx.Response(200, json={"results": [{"code": 400, "body": body}, {"code": 201, "body": {}}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(carrier)) as client:
        sms = HttpSmsProvider(client, "http://carrier")
        barred, accepted = await sms.send_many(batch_of(phones))
        refused = await sms.send_many(batch_of(phones, text="字" * 2000))

    assert (barred.accepted, barred.retryable) == (False, False)
    assert barred.error is not None and "139****5678 is barred" in barred.error
    assert accepted.accepted and accepted.provider_id is None  # accepted without an id: logged, not fatal
    assert [(r.accepted, r.retryable, r.error) for r in refused] == [(False, False, "HTTP 413: Too large")] * 2
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert mask_phone(phones[0]) in logged
    assert not any(phone in logged for phone in phones)
