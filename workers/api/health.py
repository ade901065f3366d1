"""GET /health: open (load balancers call it), and it says nothing an attacker could use:
each part's ok and latency; why a part failed goes to the server's log only."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from workers.api.auth import Deps

log = logging.getLogger("aiops.api")
router = APIRouter(tags=["health"])


class Component(BaseModel):
    ok: bool
    latency_ms: float


class Health(BaseModel):
    status: str
    components: dict[str, Component]


async def _timed(name: str, check: Callable[[], Awaitable[object]]) -> Component:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=3.0)
        ok = True
    except Exception as error:  # any failure is the answer: the part is not usable
        log.warning("health: %s is down: %s: %s", name, type(error).__name__, error)
        ok = False
    return Component(ok=ok, latency_ms=round((time.perf_counter() - started) * 1000, 2))


@router.get("/health", response_model=Health)
async def health(b: Deps) -> JSONResponse:
    """200 only when PostgreSQL, Redis and Temporal all answer; 503 otherwise. No token."""
    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "postgres": lambda: b.pool.fetchval("SELECT 1"),
        "redis": lambda: b.redis.ping(),
        "temporal": lambda: b.temporal.workflow_service.get_system_info(GetSystemInfoRequest()),
    }
    results = await asyncio.gather(*(_timed(n, c) for n, c in checks.items()))
    components = dict(zip(checks, results, strict=True))
    ok = all(c.ok for c in components.values())
    body = Health(status="healthy" if ok else "unhealthy", components=components)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)
