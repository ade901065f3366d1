"""The FastAPI application: the backends it holds open and the routers it serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI
from temporalio.client import Client

from aiops.auth import ApprovalSigner, TokenVerifier
from aiops.auth.keys import approval_key, token_verifier
from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.embeddings import get_embedder
from aiops.endpoints import resolve_database_url, resolve_redis_url
from aiops.events.mesh import EventMesh
from aiops.knowledge import KnowledgeGraph
from aiops.registry import ServiceRegistry
from aiops.registry.secrets import load_fernet
from aiops.temporal_client import connect


class Backends:
    """What every request shares: pools, clients, the token verifier, the approval signer."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        temporal: Client,
        verifier: TokenVerifier,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.temporal = temporal
        self.verifier = verifier
        self.signer = ApprovalSigner(approval_key(settings))
        self.mesh = EventMesh(
            redis,
            maxlen=settings.events_maxlen,
            dead_letter_stream=settings.dead_letter_stream,
            max_event_bytes=settings.events_max_payload_bytes,
        )
        self.registry = ServiceRegistry(pool, load_fernet(settings))
        self._kg: KnowledgeGraph | None = None

    @property
    def kg(self) -> KnowledgeGraph:
        # the embedding model loads on the first search, not at start
        if self._kg is None:
            self._kg = KnowledgeGraph(
                self.pool, get_embedder(self.settings), self.settings.similarity_threshold
            )
        return self._kg


def create_app(settings: Settings) -> FastAPI:
    from workers.api import events, health, incidents, kg, services

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
    for module in (health, incidents, services, events, kg):
        app.include_router(module.router)
    return app
