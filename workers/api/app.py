"""The FastAPI application: the backends it holds open and the routers it serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from aiops.auth.keys import token_verifier
from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url, resolve_redis_url
from aiops.temporal_client import connect
from workers.api import (
    adoption,
    approve_links,
    events,
    health,
    incidents,
    intake,
    kg,
    services,
)
from workers.api.backends import Backends


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # first: a server that cannot verify tokens must not start at all
        verifier = token_verifier(settings)
        pool = await create_pool(resolve_database_url(settings), max_size=5)
        redis = aioredis.Redis.from_url(resolve_redis_url(settings), socket_timeout=5)
        try:
            temporal = await connect(settings, "aiops-api")
            app.state.backends = Backends(settings, pool, redis, temporal, verifier)
            yield
        finally:
            await redis.aclose()
            await pool.close()

    app = FastAPI(
        title="aiops",
        summary="Incidents, approvals, services, events and the knowledge graph over HTTP",
        description=(
            "Every route but `GET /health` needs `Authorization: Bearer <token>`. Roles: "
            "viewer reads; operator publishes events; approver decides critical steps; "
            "admin changes the service registry (and can do everything)."
        ),
        lifespan=lifespan,
    )
    for module in (health, incidents, services, events, intake, kg, approve_links, adoption):
        app.include_router(module.router)
    return app
