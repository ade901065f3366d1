"""`aiops api` on the real servers: health names the failing part (and nothing more), events
land on Redis, every route needs a token with the right role, secrets stay in."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from aiops.auth import Role, issue_token
from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.devstack.ports import free_port
from aiops.registry import ServiceDefinition, ServiceRegistry
from workers.api import create_app

KEY = Fernet.generate_key().decode()
JWT_SECRET = "test-jwt-secret-" + uuid.uuid4().hex


def api_settings(
    database_url: str, redis_url: str, temporal: str, home: Path, **extra: Any
) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        temporal_address=temporal,
        tracing="off",
        secret_key=SecretStr(KEY),
        jwt_secret=SecretStr(JWT_SECRET),
        home=home,
        # the routes' own checks; producer trust on the API has a test of its own
        **{"event_trust": "open", **extra},
    )


# Modules mint their tokens when they are imported, i.e. when the suite is collected, and
# their tests may run as late as the suite's end: a slow run must not outlast them.
def token(*roles: Role, sub: str = "alice", ttl_s: float = 3 * 3600) -> str:
    return issue_token(JWT_SECRET, sub, list(roles), timedelta(seconds=ttl_s))


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_health_names_the_part_that_is_down(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    address = temporal_env.client.service_client.config.target_host
    async with api_client(api_settings(database_url, redis_url, address, tmp_path)) as api:
        ok = await api.get("/health")  # no token: load balancers call it
    assert ok.status_code == 200
    assert {k: v["ok"] for k, v in ok.json()["components"].items()} == {
        "postgres": True,
        "redis": True,
        "temporal": True,
    }
    dead_port = free_port()
    dead_redis = f"redis://127.0.0.1:{dead_port}/0"
    async with api_client(api_settings(database_url, dead_redis, address, tmp_path)) as api:
        down = await api.get("/health")
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "unhealthy" and body["components"]["redis"]["ok"] is False
    assert body["components"]["postgres"]["ok"] is True
    # the part is named; why it failed (addresses, error text) is for the server log only
    assert set(body["components"]["redis"]) == {"ok", "latency_ms"}
    assert str(dead_port) not in down.text and "Error" not in down.text


async def test_events_tokens_services_and_approvals(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    stream_prefix: str,
    tmp_path: Path,
) -> None:
    address = temporal_env.client.service_client.config.target_host
    settings = api_settings(
        database_url,
        redis_url,
        address,
        tmp_path,
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
                env={"DB_PASSWORD": "hunter2-value"},
                credentials=SecretStr("admin-token-xyz"),
            )
        )
    finally:
        await pool.close()
    event = {"event_type": "ServiceError", "source": "api-test", "payload": {"message": "boom"}}
    stream = f"{stream_prefix}:events"
    operator = bearer(token(Role.OPERATOR, sub="ops-bot"))
    async with api_client(settings) as api:
        refused = await api.post("/events", params={"stream": stream}, json=event)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        published = await api.post(
            "/events", params={"stream": stream}, json=event, headers=operator
        )
        assert published.status_code == 202, published.text
        assert published.json()["stream"] == stream
        # the static AIOPS_API_TOKEN of earlier releases still publishes
        static = bearer("s3cret")
        again = await api.post("/events", params={"stream": stream}, json=event, headers=static)
        assert again.status_code == 202, again.text
        invalid = await api.post("/events", json={"source": "x"}, headers=operator)
        assert invalid.status_code == 422  # no event_type: refused, nothing published
        elsewhere = await api.post(
            "/events", params={"stream": "sessions:42"}, json=event, headers=operator
        )
        assert elsewhere.status_code == 400  # not a stream the listener reads
        odd = await api.post(
            "/events", json=event, headers={b"Authorization": "Bearer é".encode("latin-1")}
        )
        assert odd.status_code == 401

        viewer = bearer(token(Role.VIEWER))
        services = await api.get("/services", params={"capability": "crud"}, headers=viewer)
        assert services.status_code == 200, services.text
        [row] = services.json()
        assert row["name"] == "bookmark-api" and row["has_credentials"] is True
        assert row["env_keys"] == ["DB_PASSWORD"] and "env" not in row
        assert "admin-token-xyz" not in services.text and "hunter2-value" not in services.text
        assert (await api.get("/services", headers=static)).status_code == 200

        missing = f"incident-{uuid.uuid4().hex[:8]}"
        approver = bearer(token(Role.APPROVER))
        unknown = await api.post(
            f"/incidents/{missing}/approve",
            json={"approver": "alice", "approved": True},  # the old body shape still parses
            headers=approver,
        )
        assert unknown.status_code == 404
        assert unknown.json()["detail"] == f"incident {missing} not found"
        read = await api.get(f"/incidents/{missing}", headers=viewer)
        assert read.status_code == 404 and read.json()["detail"] == f"incident {missing} not found"
        listed = await api.get("/incidents", headers=viewer)
        assert listed.status_code == 200 and isinstance(listed.json(), list)

    redis = aioredis.Redis.from_url(redis_url)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream)  # type: ignore[assignment]
    finally:
        await redis.aclose()
    first, second = entries
    stored = json.loads(first[1][b"event"])
    assert stored["id"] == published.json()["id"] and stored["payload"] == {"message": "boom"}
    assert json.loads(second[1][b"event"])["id"] == again.json()["id"]
