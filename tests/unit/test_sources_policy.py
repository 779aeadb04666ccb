"""services.intake.sources.policy: API keys and the per-source token bucket (contract §1: 401, 429 + Retry-After)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.sources.policy import TokenBucket, bucket_capacity, retry_after_header
from shared.apikeys import KEY_PREFIX, hash_api_key, new_api_key

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)


# --------------------------------------------------------------------------- TokenBucket


def test_a_full_bucket_starts_with_capacity_tokens_at_now() -> None:
    bucket = TokenBucket.full(rate=2.0, capacity=10.0, now=100.0)
    assert bucket == TokenBucket(rate=2.0, capacity=10.0, tokens=10.0, updated=100.0)


def test_a_full_bucket_allows_a_burst_up_to_its_capacity_then_refuses() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=5.0, now=0.0)
    assert [bucket.take(1, now=0.0) for _ in range(5)] == [None] * 5
    assert bucket.take(1, now=0.0) == 1.0


def test_a_burst_of_exactly_capacity_in_one_take_is_allowed() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=1000.0, now=0.0)
    assert bucket.take(1000, now=0.0) is None
    assert bucket.tokens == 0.0


def test_a_cost_above_the_tokens_left_is_refused_and_takes_nothing() -> None:
    bucket = TokenBucket.full(rate=2.0, capacity=10.0, now=0.0)
    assert bucket.take(7, now=0.0) is None
    assert bucket.take(4, now=0.0) == 0.5  # 3 left, 1 more needed at 2/s
    assert bucket.tokens == 3.0
    assert bucket.take(3, now=0.0) is None


def test_a_refusal_does_not_push_the_wait_further_out() -> None:
    bucket = TokenBucket.full(rate=4.0, capacity=8.0, now=0.0)
    assert bucket.take(8, now=0.0) is None
    assert bucket.take(3, now=0.0) == 0.75
    assert bucket.take(3, now=0.0) == 0.75
    assert bucket.take(3, now=0.5) == 0.25


def test_tokens_refill_at_rate_per_second() -> None:
    bucket = TokenBucket.full(rate=2.0, capacity=10.0, now=0.0)
    assert bucket.take(10, now=0.0) is None
    assert bucket.take(3, now=1.0) == 0.5  # 2 tokens after 1 s
    assert bucket.take(3, now=1.5) is None  # 3 tokens after 1.5 s
    assert bucket.take(1, now=1.5) == 0.5


def test_refill_stops_at_capacity() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=5.0, now=0.0)
    assert bucket.take(5, now=0.0) is None
    assert bucket.take(1, now=1_000_000.0) is None
    assert bucket.tokens == 4.0
    assert bucket.take(5, now=1_000_000.0) == 1.0


def test_a_fractional_rate_refills_slowly() -> None:
    bucket = TokenBucket.full(rate=0.25, capacity=2.0, now=0.0)
    assert bucket.take(2, now=0.0) is None
    assert bucket.take(1, now=0.0) == 4.0
    assert bucket.take(1, now=3.0) == 1.0
    assert bucket.take(1, now=4.0) is None


def test_the_returned_wait_is_exact() -> None:
    bucket = TokenBucket.full(rate=4.0, capacity=8.0, now=10.0)
    assert bucket.take(8, now=10.0) is None
    wait = bucket.take(3, now=10.0)
    assert wait == 0.75
    assert bucket.take(3, now=10.0 + 0.75 - 1 / 1024) is not None  # a moment too early
    assert bucket.take(3, now=10.0 + 0.75) is None  # exactly on time


# Dyadic rationals (powers of two, multiples of 1/8) keep every float operation exact,
# so the bucket's promises can be checked with == rather than approximately.
rates = st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0, 16.0, 128.0])
capacities = st.integers(1, 2000).map(float)
steps = st.lists(st.tuples(st.integers(0, 80).map(lambda n: n / 8), st.integers(1, 40)), max_size=40)


@PROPERTY
@given(rates, capacities, steps)
def test_tokens_stay_between_0_and_capacity(rate: float, capacity: float, ops: list[tuple[float, int]]) -> None:
    now = 0.0
    bucket = TokenBucket.full(rate, capacity, now)
    for dt, cost in ops:
        now += dt
        bucket.take(cost, now)
        assert 0.0 <= bucket.tokens <= capacity


@PROPERTY
@given(rates, capacities, steps)
def test_admitted_cost_never_exceeds_capacity_plus_rate_times_elapsed(
    rate: float, capacity: float, ops: list[tuple[float, int]]
) -> None:
    now = 0.0
    bucket = TokenBucket.full(rate, capacity, now)
    admitted = 0
    for dt, cost in ops:
        now += dt
        if bucket.take(cost, now) is None:
            admitted += cost
        assert admitted <= capacity + rate * now


@PROPERTY
@given(rates, capacities, steps, st.integers(1, 40))
def test_a_refused_take_is_allowed_exactly_after_the_returned_wait_and_not_before(
    rate: float, capacity: float, ops: list[tuple[float, int]], cost: int
) -> None:
    cost = min(cost, int(capacity))
    now = 0.0
    bucket = TokenBucket.full(rate, capacity, now)
    for dt, c in ops:
        now += dt
        bucket.take(c, now)
    wait = bucket.take(cost, now)
    if wait is None:
        return
    assert wait > 0
    assert wait == (cost - bucket.tokens) / rate
    early = TokenBucket(bucket.rate, bucket.capacity, bucket.tokens, bucket.updated)
    assert early.take(cost, now + wait - min(wait, 1 / 1024) / 2) is not None
    assert bucket.take(cost, now + wait) is None


@PROPERTY
@given(rates, capacities, st.integers(0, 10_000).map(lambda n: n / 8))
def test_an_idle_bucket_allows_one_capacity_sized_burst(rate: float, capacity: float, idle: float) -> None:
    bucket = TokenBucket.full(rate, capacity, 0.0)
    assert bucket.take(capacity, 0.0) is None
    if bucket.take(capacity, idle) is None:
        assert rate * idle >= capacity
    else:
        assert rate * idle < capacity


# --------------------------------------------------------------------------- API keys


def test_hash_api_key_is_sha256_hex() -> None:
    assert hash_api_key("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hash_api_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@PROPERTY
@given(st.text(max_size=80), st.text(max_size=80))
def test_hash_api_key_is_deterministic_and_tells_keys_apart(key: str, other: str) -> None:
    digest = hash_api_key(key)
    assert digest == hash_api_key(key)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    if key != other:
        assert digest != hash_api_key(other)


def test_a_new_api_key_has_the_prefix_and_256_random_bits_url_safe() -> None:
    key = new_api_key()
    assert KEY_PREFIX == "qz_"
    assert key.startswith("qz_")
    assert re.fullmatch(r"qz_[A-Za-z0-9_-]{43}", key)  # 32 bytes in unpadded base64url


def test_new_api_keys_are_unique() -> None:
    keys = [new_api_key() for _ in range(1000)]
    assert len(set(keys)) == len(keys)
    assert len({hash_api_key(k) for k in keys}) == len(keys)


def test_the_hash_of_a_new_key_does_not_contain_the_key() -> None:
    key = new_api_key()
    assert key not in hash_api_key(key)
    assert key[len(KEY_PREFIX) :] not in hash_api_key(key)


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (0.0, "1"),
        (-3.0, "1"),
        (0.001, "1"),
        (0.5, "1"),
        (1.0, "1"),
        (1.0001, "2"),
        (2.5, "3"),
        (59.99, "60"),
        (60.0, "60"),
        (3600.2, "3601"),
    ],
)
def test_retry_after_rounds_up_to_whole_seconds_and_is_at_least_1(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


@PROPERTY
@given(st.floats(min_value=-1e6, max_value=1e9, allow_nan=False))
def test_retry_after_is_never_earlier_than_the_wait_nor_a_whole_second_later(seconds: float) -> None:
    header = retry_after_header(seconds)
    assert re.fullmatch(r"[1-9][0-9]*", header)  # delay-seconds: a positive integer
    value = int(header)
    assert value >= seconds
    assert value >= 1
    if value > 1:
        assert value - 1 < seconds


# --------------------------------------------------------------------------- bucket_capacity


@pytest.mark.parametrize(
    ("rate", "batch", "capacity"),
    [(10.0, 1000, 1000.0), (500.0, 1000, 1000.0), (1000.0, 1000, 2000.0), (0.5, 1, 1.0), (3.0, 1, 6.0)],
)
def test_bucket_capacity_is_two_seconds_of_traffic_or_one_batch_whichever_is_larger(
    rate: float, batch: int, capacity: float
) -> None:
    result = bucket_capacity(rate, batch)
    assert result == capacity
    assert isinstance(result, float)


@PROPERTY
@given(st.floats(min_value=0.01, max_value=1e6), st.integers(1, 10_000))
def test_a_new_bucket_always_has_room_for_one_full_batch(rate: float, batch: int) -> None:
    capacity = bucket_capacity(rate, batch)
    assert capacity >= batch
    assert capacity >= 2 * rate
    assert capacity in (2 * rate, float(batch))
    assert TokenBucket.full(rate, capacity, 0.0).take(batch, 0.0) is None


@PROPERTY
@given(st.floats(min_value=0.01, max_value=1e4), st.integers(1, 10_000))
def test_a_full_batch_refused_by_an_empty_bucket_waits_at_most_capacity_over_rate(rate: float, batch: int) -> None:
    capacity = bucket_capacity(rate, batch)
    bucket = TokenBucket.full(rate, capacity, 0.0)
    assert bucket.take(capacity, 0.0) is None
    wait = bucket.take(batch, 0.0)
    assert wait is not None
    assert math.isclose(wait, batch / rate)
    assert wait <= capacity / rate
