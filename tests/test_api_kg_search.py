"""`GET /kg/search` is bounded: `limit` in 1..100 (422 otherwise) and a rate per identity
(token subject), shared through Redis, 429 with Retry-After beyond it."""

from __future__ import annotations

import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from test_api import api_client, api_settings, bearer, token

from aiops.auth import Role


async def test_kg_search_limit_is_bounded_and_rate_limited_per_identity(
    database_url: str, redis_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    target = temporal_env.client.service_client.config.target_host
    settings = api_settings(database_url, redis_url, target, tmp_path, kg_search_per_minute=3)
    # unique subjects: the counters live in the session's shared Redis
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    as_alice = bearer(token(Role.VIEWER, sub=alice))
    async with api_client(settings) as client:
        for bad in ("0", "101", "-1"):
            refused = await client.get(
                "/kg/search", params={"q": "disk full", "limit": bad}, headers=as_alice
            )
            assert refused.status_code == 422, refused.text
        for _ in range(3):
            found = await client.get(
                "/kg/search", params={"q": "disk full", "limit": 100}, headers=as_alice
            )
            assert found.status_code == 200, found.text
        over = await client.get("/kg/search", params={"q": "disk full"}, headers=as_alice)
        assert over.status_code == 429
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        assert alice in over.json()["detail"]
        # another identity has its own budget
        other = await client.get(
            "/kg/search", params={"q": "disk full"}, headers=bearer(token(Role.VIEWER, sub=bob))
        )
        assert other.status_code == 200, other.text
