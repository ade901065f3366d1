"""`aiops api` on the real servers: health names the failing part, events land on Redis,
approvals go through the workflow's validator, tokens guard the POSTs, secrets stay in."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.devstack.ports import free_port
from aiops.registry import ServiceDefinition, ServiceRegistry
from workers.api import create_app

KEY = Fernet.generate_key().decode()


def _settings(database_url: str, redis_url: str, temporal: str, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        temporal_address=temporal,
        tracing="off",
        secret_key=SecretStr(KEY),
        **extra,
    )


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_health_names_the_part_that_is_down(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    address = temporal_env.client.service_client.config.target_host
    async with _client(_settings(database_url, redis_url, address)) as api:
        ok = await api.get("/health")
    assert ok.status_code == 200
    assert {k: v["ok"] for k, v in ok.json()["components"].items()} == {
        "postgres": True,
        "redis": True,
        "temporal": True,
    }
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with _client(_settings(database_url, dead_redis, address)) as api:
        down = await api.get("/health")
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "unhealthy" and body["components"]["redis"]["ok"] is False
    assert body["components"]["postgres"]["ok"] is True and body["components"]["redis"]["error"]


async def test_events_tokens_services_and_approvals(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, stream_prefix: str
) -> None:
    address = temporal_env.client.service_client.config.target_host
    settings = _settings(
        database_url,
        redis_url,
        address,
        api_token=SecretStr("s3cret"),
        listener_streams=f"{stream_prefix}:*",
    )
    pool = await create_pool(database_url)
    try:
        await ServiceRegistry(pool, Fernet(KEY.encode())).register(
            ServiceDefinition(
                name="bookmark-api",
                endpoint="http://127.0.0.1:9",
                capabilities=["crud"],
                credentials=SecretStr("admin-token-xyz"),
            )
        )
    finally:
        await pool.close()
    event = {"event_type": "ServiceError", "source": "api-test", "payload": {"message": "boom"}}
    stream = f"{stream_prefix}:events"
    async with _client(settings) as api:
        refused = await api.post("/events", params={"stream": stream}, json=event)
        assert refused.status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        published = await api.post("/events", params={"stream": stream}, json=event, headers=auth)
        assert published.status_code == 202, published.text
        invalid = await api.post("/events", json={"source": "x"}, headers=auth)
        assert invalid.status_code == 422  # no event_type: refused, nothing published
        elsewhere = await api.post(
            "/events", params={"stream": "sessions:42"}, json=event, headers=auth
        )
        assert elsewhere.status_code == 400  # not a stream the listener reads
        odd = await api.post(
            "/events", json=event, headers={b"Authorization": "Bearer é".encode("latin-1")}
        )
        assert odd.status_code == 401

        services = await api.get("/services", params={"capability": "crud"})
        assert [s["name"] for s in services.json()] == ["bookmark-api"]
        assert "admin-token-xyz" not in services.text

        missing = f"incident-{uuid.uuid4().hex[:8]}"
        unknown = await api.post(
            f"/incidents/{missing}/approve",
            json={"approver": "alice", "approved": True},
            headers=auth,
        )
        assert unknown.status_code == 400 and missing in unknown.json()["detail"]
        assert (await api.get(f"/incidents/{missing}")).status_code == 404

    redis = aioredis.Redis.from_url(redis_url)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream)  # type: ignore[assignment]
    finally:
        await redis.aclose()
    [(_, fields)] = entries
    stored = json.loads(fields[b"event"])
    assert stored["id"] == published.json()["id"] and stored["payload"] == {"message": "boom"}
