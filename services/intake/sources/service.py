from __future__ import annotations

import time
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from services.intake.sources import repository
from services.intake.sources.models import Source, SourceCreate, SourceIdentity
from services.intake.sources.policy import (
    TokenBucket,
    bucket_capacity,
    hash_api_key,
    new_api_key,
)
from shared.db import SessionFactory


class SourceError(Exception):
    pass


async def add_source(session: AsyncSession, data: SourceCreate, *, api_key: str | None = None) -> tuple[Source, str]:
    """Register an upstream system; returns it with its API key, which is shown once and stored hashed."""
    if await repository.get_by_name(session, data.name) is not None:
        raise SourceError(f"source {data.name!r} already exists")
    source = await repository.add(session, Source(name=data.name, rate_per_s=data.rate_per_s))
    key = api_key or new_api_key()
    await repository.add_key(session, source.id, hash_api_key(key), key[:8])
    return source, key


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
