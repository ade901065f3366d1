"""`aiops limits set max_diagnoses N` bounds the searches a running worker does at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import redis.asyncio as aioredis

from activities.knowledge import KnowledgeActivities
from aiops.db.pool import create_pool
from aiops.embeddings.base import Vectors, l2_normalise
from aiops.events.mesh import EventMesh
from aiops.knowledge import KnowledgeGraph
from aiops.models.diagnosis import DiagnosisInput
from aiops.monitor.limits import BUILTIN_LIMITS, LimitsCache, LimitsStore


class _SlowEmbedder:
    """A real embedder's contract, slow on purpose, counting how many embed at once."""

    model = "slow-test"
    dim = 384

    def __init__(self) -> None:
        self.running = 0
        self.most = 0

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.1)
        self.running -= 1
        return l2_normalise(np.ones((len(texts), self.dim), dtype=np.float32))


async def test_max_diagnoses_applies_while_running(database_url: str, redis_url: str) -> None:
    pool = await create_pool(database_url)
    mesh = EventMesh(aioredis.Redis.from_url(redis_url))
    try:
        embedder = _SlowEmbedder()
        store = LimitsStore(pool, BUILTIN_LIMITS)
        await store.set("max_diagnoses", 1)
        activities = KnowledgeActivities(
            KnowledgeGraph(pool, embedder),
            mesh,
            limits=LimitsCache(store, refresh_s=0.0),
        )

        async def searches(n: int) -> None:
            await asyncio.gather(
                *(
                    activities.search(DiagnosisInput(incident_id=f"i{i}", text=f"disk full {i}"))
                    for i in range(n)
                )
            )

        await searches(4)
        assert embedder.most == 1
        await store.set("max_diagnoses", 3)
        embedder.most = 0
        await searches(6)
        assert embedder.most == 3
    finally:
        await mesh.aclose()
        await pool.close()
