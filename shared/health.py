"""/healthz (the process answers) and /readyz (its database and broker are reachable)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import JSONResponse

from shared.metrics import metrics_endpoint

Check = Callable[[], Awaitable[bool]]


def database_check(engine: AsyncEngine) -> Check:
    async def check() -> bool:
        try:
            async with asyncio.timeout(2), engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    return check


def operations_router(checks: Callable[[], dict[str, Check]]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        named = checks()
        results = await asyncio.gather(*(check() for check in named.values()))
        status = {name: ("ok" if ok else "unavailable") for name, ok in zip(named, results, strict=True)}
        ready = all(results)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": status},
            200 if ready else 503,
            headers=None if ready else {"Retry-After": "5"},
        )

    router.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    return router
