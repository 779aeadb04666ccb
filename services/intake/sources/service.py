from __future__ import annotations

import time
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.sources import repository
from services.intake.sources.models import Source, SourceCreate, SourceIdentity
from services.intake.sources.policy import TokenBucket, bucket_capacity
from shared.apikeys import KEY_PREFIX_LENGTH, hash_api_key, new_api_key
from shared.db import SessionFactory


class SourceError(Exception):
    pass


async def add_source(session: AsyncSession, data: SourceCreate, *, api_key: str | None = None) -> tuple[Source, str]:
    """Register an upstream system; returns it with its API key, which is shown once and stored hashed."""
    if await repository.get_by_name(session, data.name) is not None:
        raise SourceError(f"source {data.name!r} already exists")
    source = await repository.add(session, Source(name=data.name, rate_per_s=data.rate_per_s))
    key = api_key or new_api_key()
    await repository.add_key(session, source.id, hash_api_key(key), key[:KEY_PREFIX_LENGTH])
    return source, key


MAX_ACTIVE_KEYS = 2  # the old and the new key during a rotation


async def rotate_key(session: AsyncSession, name: str) -> tuple[str, str]:
    """Add a key to a source (the old one keeps working until revoked); returns (key, its prefix)."""
    source = await _active(session, name)
    if len(await repository.active_keys(session, source.id)) >= MAX_ACTIVE_KEYS:
        raise SourceError(f"source {name!r} already has {MAX_ACTIVE_KEYS} active keys: revoke the old one first")
    key = new_api_key()
    await repository.add_key(session, source.id, hash_api_key(key), key[:KEY_PREFIX_LENGTH])
    return key, key[:KEY_PREFIX_LENGTH]


async def revoke_key(session: AsyncSession, name: str, key_prefix: str) -> None:
    source = await _active(session, name)
    if not await repository.revoke_key(session, source.id, key_prefix):
        raise SourceError(f"source {name!r} has no active key starting {key_prefix!r}")


async def active_key_prefixes(session: AsyncSession, source: Source) -> list[str]:
    return [k.key_prefix for k in await repository.active_keys(session, source.id)]


async def _active(session: AsyncSession, name: str) -> Source:
    source = await repository.get_by_name(session, name)
    if source is None or source.revoked_at is not None:
        raise SourceError(f"no active source named {name!r}")
    return source


async def revoke_source(session: AsyncSession, name: str) -> Source:
    source = await repository.get_by_name(session, name)
    if source is None:
        raise SourceError(f"no source named {name!r}")
    await repository.revoke(session, source)
    return source


@dataclass
class _Cached:
    identity: SourceIdentity | None
    expires: float


class SourceDirectory:
    """Resolves API keys to sources, cached briefly so that a busy source costs no query per request.

    A revoked key stops working within `ttl` seconds on every replica.
    """

    def __init__(self, factory: SessionFactory, *, ttl: float, batch_max_records: int) -> None:
        self.factory = factory
        self.ttl = ttl
        self.batch_max_records = batch_max_records
        self._cache: dict[str, _Cached] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def authenticate(self, api_key: str) -> SourceIdentity | None:
        key_hash = hash_api_key(api_key)
        now = time.monotonic()
        cached = self._cache.get(key_hash)
        if cached is not None and cached.expires > now:
            return cached.identity
        async with self.factory() as session:
            source = await repository.find_active_by_key_hash(session, key_hash)
        identity = SourceIdentity(name=source.name, rate_per_s=source.rate_per_s) if source else None
        if len(self._cache) > 10_000:  # unknown keys must not grow the cache without bound
            self._cache.clear()
        self._cache[key_hash] = _Cached(identity, now + self.ttl)
        return identity

    def throttle(self, source: SourceIdentity, cost: int) -> float | None:
        """None if `source` may send `cost` more records now, else the seconds to wait."""
        now = time.monotonic()
        bucket = self._buckets.get(source.name)
        if bucket is None or bucket.rate != source.rate_per_s:
            bucket = TokenBucket.full(
                source.rate_per_s, bucket_capacity(source.rate_per_s, self.batch_max_records), now
            )
            self._buckets[source.name] = bucket
        return bucket.take(cost, now)
