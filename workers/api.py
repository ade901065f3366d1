"""`aiops api`: HTTP for what the CLI does, for dashboards, load balancers and scripts.

GET /health answers 200 only when PostgreSQL, Redis and Temporal all answer (503 with the
failing part named otherwise), so a load balancer or an orchestrator can use it as is.
Mutating endpoints (POST) need `Authorization: Bearer <AIOPS_API_TOKEN>` when a token is
set; reads are open, as the Temporal Web UI is.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError

from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.embeddings import get_embedder
from aiops.endpoints import resolve_database_url, resolve_redis_url
from aiops.events.consumer import split_patterns
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh, PublishError
from aiops.knowledge import KnowledgeGraph, SearchHit
from aiops.models.healing import ApprovalDecision
from aiops.models.incident import IncidentStatus
from aiops.registry import ServiceRegistry
from aiops.registry.secrets import load_fernet
from aiops.temporal_client import connect
from workers.commands.incidents import list_incidents


class Component(BaseModel):
    ok: bool
    latency_ms: float
    error: str | None = None


class Health(BaseModel):
    status: str
    components: dict[str, Component]


class Published(BaseModel):
    id: str
    stream_entry: str


class Backends:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, temporal: Client
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.temporal = temporal
        self.mesh = EventMesh(redis, maxlen=settings.events_maxlen)
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


async def _timed(check: Callable[[], Awaitable[object]]) -> Component:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=3.0)
        return Component(ok=True, latency_ms=(time.perf_counter() - started) * 1000)
    except Exception as error:  # any failure is the answer: the part is not usable
        return Component(
            ok=False,
            latency_ms=(time.perf_counter() - started) * 1000,
            error=f"{type(error).__name__}: {error}"[:300],
        )


def _backends(request: Request) -> Backends:
    found: Backends = request.app.state.backends
    return found


Deps = Annotated[Backends, Depends(_backends)]


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(resolve_database_url(settings), max_size=5)
        redis = aioredis.Redis.from_url(resolve_redis_url(settings), socket_timeout=5)
        try:
            temporal = await connect(settings, "aiops-api")
            app.state.backends = Backends(settings, pool, redis, temporal)
            yield
        finally:
            await redis.aclose()
            await pool.close()

    app = FastAPI(
        title="aiops",
        summary="Incidents, approvals, services, events and the knowledge graph over HTTP",
        lifespan=lifespan,
    )

    async def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        token = settings.api_token
        if token is None:
            return
        expected = f"Bearer {token.get_secret_value()}".encode()
        given = (authorization or "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, "this endpoint needs Authorization: Bearer <AIOPS_API_TOKEN>")

    @app.get("/health", response_model=Health)
    async def health(b: Deps) -> JSONResponse:
        checks = {
            "postgres": lambda: b.pool.fetchval("SELECT 1"),
            "redis": lambda: b.redis.ping(),
            "temporal": lambda: b.temporal.workflow_service.get_system_info(GetSystemInfoRequest()),
        }
        results = await asyncio.gather(*(_timed(c) for c in checks.values()))
        components = dict(zip(checks, results, strict=True))
        ok = all(c.ok for c in components.values())
        body = Health(status="healthy" if ok else "unhealthy", components=components)
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)

    @app.get("/incidents")
    async def incidents(
        b: Deps,
        include_closed: Annotated[bool, Query(alias="all")] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[dict[str, Any]]:
        return await list_incidents(b.temporal, include_closed, limit)

    @app.get("/incidents/{workflow_id}", response_model=IncidentStatus)
    async def incident(workflow_id: str, b: Deps) -> IncidentStatus:
        handle = b.temporal.get_workflow_handle(workflow_id)
        try:
            status: IncidentStatus = await handle.query("status", result_type=IncidentStatus)
        except RPCError as error:
            raise HTTPException(404, f"{workflow_id}: {error.message}") from None
        return status

    @app.post("/incidents/{workflow_id}/approve", dependencies=[Depends(authorized)])
    async def approve(workflow_id: str, decision: ApprovalDecision, b: Deps) -> dict[str, str]:
        handle = b.temporal.get_workflow_handle(workflow_id)
        try:
            said: str = await handle.execute_update("decide", decision, result_type=str)
        except Exception as error:  # the update's validator says what is wrong
            cause = getattr(error, "cause", None) or error
            raise HTTPException(400, f"{workflow_id}: {cause}") from None
        return {"result": said}

    @app.get("/services")
    async def services(b: Deps, capability: str | None = None) -> list[dict[str, Any]]:
        found = await b.registry.discover(capabilities=[capability] if capability else None)
        # the credential never leaves the registry
        return [s.model_dump(mode="json", exclude={"credentials", "env"}) for s in found]

    @app.post("/events", status_code=202, dependencies=[Depends(authorized)])
    async def publish(event: Event, b: Deps, stream: str | None = None) -> Published:
        # only streams the listener reads: this is not a way to write any Redis key
        patterns = split_patterns(settings.listener_streams)
        if stream is not None and not any(fnmatch.fnmatchcase(stream, p) for p in patterns):
            raise HTTPException(400, f"stream {stream!r} is not one of {patterns}")
        try:
            entry = await b.mesh.publish(event, stream=stream)
        except PublishError as error:
            raise HTTPException(400, str(error)) from None
        return Published(id=str(event.id), stream_entry=entry)

    @app.get("/kg/search", response_model=list[SearchHit])
    async def search(
        b: Deps, q: Annotated[str, Query(min_length=1)], limit: int = 5
    ) -> list[SearchHit]:
        return await b.kg.find_solutions(q, limit=limit)

    return app
