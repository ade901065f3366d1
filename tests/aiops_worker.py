"""The full aiops worker for tests: every workflow and activity, on the test's servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from temporalio.client import Client
from temporalio.worker import Worker

from aiops.db.pool import create_pool
from aiops.diagnosis.llm import RootCauseWriter
from aiops.embeddings import CachedEmbedder, MiniLMEmbedder
from aiops.events.mesh import EventMesh
from aiops.knowledge import KnowledgeGraph
from workers.worker import activities_of, activity_holders
from workflows import ALL_WORKFLOWS

EMBEDDER = CachedEmbedder(MiniLMEmbedder())


@asynccontextmanager
async def aiops_worker(
    client: Client,
    queue: str,
    database_url: str,
    redis_url: str,
    logs: Path | None = None,
    root_cause: RootCauseWriter | None = None,
) -> AsyncIterator[KnowledgeGraph]:
    pool = await create_pool(database_url, max_size=10)
    mesh = EventMesh(aioredis.Redis.from_url(redis_url))
    kg = KnowledgeGraph(pool, EMBEDDER)
    holders = activity_holders(
        pool,
        Fernet(Fernet.generate_key()),
        logs or Path("/tmp/aiops-test-logs"),
        kg,
        mesh,
        root_cause=root_cause,
    )
    try:
        async with Worker(
            client, task_queue=queue, workflows=ALL_WORKFLOWS, activities=activities_of(*holders)
        ):
            yield kg
    finally:
        await mesh.aclose()
        await pool.close()
