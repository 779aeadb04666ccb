"""A member's phone talking to the real APIs: logs in at dispatch, refreshes its token before it expires (or when
refused), and retries what the network or a restarting service lost. POSTs carry an Idempotency-Key, so a retry
is safe."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

log = logging.getLogger("quanzu.sim")
#: Statuses that mean "the service is (re)starting or overloaded", not "your request is wrong".
RETRYABLE = {429, 502, 503, 504}
GIVE_UP_AFTER_S = 120.0


async def send(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request, retried with backoff through connection errors and 429/5xx for up to GIVE_UP_AFTER_S."""
    deadline = time.monotonic() + GIVE_UP_AFTER_S
    delay = 0.1
    while True:
        try:
            response = await http.request(method, url, **kwargs)
            if response.status_code not in RETRYABLE:
                return response
            retry_after = response.headers.get("Retry-After")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                raise
            log.debug("%s %s: %s; retrying", method, url, type(exc).__name__)
            wait = delay
        else:
            if time.monotonic() > deadline:
                return response
        await asyncio.sleep(wait)
        delay = min(delay * 2, 2.0)


class MemberSession:
    def __init__(self, http: httpx.AsyncClient, dispatch_url: str, username: str, password: str) -> None:
        self.http = http
        self.dispatch_url = dispatch_url
        self.username = username
        self._password = password
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def log_in(self) -> None:
        async with self._lock:
            await self._grant({"username": self.username, "password": self._password})

    async def _grant(self, form: dict[str, str]) -> None:
        response = await send(self.http, "POST", f"{self.dispatch_url}/v1/auth/token", data=form)
        if response.status_code != 200:
            raise RuntimeError(f"{self.username} cannot log in: HTTP {response.status_code}")
        body = response.json()
        self._access, self._refresh = body["access_token"], body["refresh_token"]
        # renew a minute early (or at half-life for short test tokens): a request never goes out with a dying token
        ttl = float(body["expires_in"])
        self._renew_at = time.monotonic() + max(ttl - 60, ttl / 2)

    async def _token(self, *, renew: bool = False) -> str:
        async with self._lock:
            if self._access is None or renew or time.monotonic() >= self._renew_at:
                refreshed = False
                if self._refresh is not None:
                    try:
                        await self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
                        refreshed = True
                    except RuntimeError:
                        refreshed = False
                if not refreshed:
                    await self._grant({"username": self.username, "password": self._password})
            assert self._access is not None
            return self._access

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        headers["Authorization"] = f"Bearer {await self._token()}"
        response = await send(self.http, method, url, headers=headers, **kwargs)
        if response.status_code == 401:  # revoked or expired under us: once more with a fresh token
            headers["Authorization"] = f"Bearer {await self._token(renew=True)}"
            response = await send(self.http, method, url, headers=headers, **kwargs)
        return response
