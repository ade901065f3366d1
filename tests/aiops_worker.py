"""The full aiops worker for tests: every workflow and activity, on the test's servers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from temporalio.client import Client
from temporalio.worker import Worker

from aiops.agents.builtin import builtin_agents
from aiops.agents.presence import AgentPresence
from aiops.agents.protocol import UniversalAgent
from aiops.config import Settings
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
    agents: Sequence[UniversalAgent] | None = None,
    agent_timeout_s: float = 5.0,
    pattern_min_outcomes: int = 10,
    *,
    approval_key: bytes | None = None,
    approvals: Literal["open", "signed"] = "open",
    policy_file: Path | None = None,
    settings: Settings | None = None,
    workflows: Sequence[type] = ALL_WORKFLOWS,
) -> AsyncIterator[KnowledgeGraph]:
    """agents: custom agents next to the built-in ones, registered (as the worker does)
    for the test's duration; None: the built-in ones only, as today. The simulated adapter
    is on, as AIOPS_SIMULATED_ADAPTER=1 turns it on; it acts for services registered with
    adapter: simulated (tests/known_problems.register_simulated). workflows: what the
    worker runs (a test may put a broken child in place of one)."""
    pool = await create_pool(database_url, max_size=10)
    mesh = EventMesh(aioredis.Redis.from_url(redis_url))
    kg = KnowledgeGraph(pool, EMBEDDER)
    presence = None
    if agents is not None:
        presence = AgentPresence(
            pool, [*builtin_agents(kg), *agents], timeout_s=agent_timeout_s, host="test"
        )
        await presence.start()
    holders = activity_holders(
        pool,
        Fernet(Fernet.generate_key()),
        logs or Path("/tmp/aiops-test-logs"),
        kg,
        mesh,
        policy_file=policy_file,
        root_cause=root_cause,
        agents=presence,
        agent_timeout_s=agent_timeout_s,
        pattern_min_outcomes=pattern_min_outcomes,
        approval_key=approval_key,
        approvals=approvals,
        simulated=True,
        client=client,
        settings=settings,
    )
    # Finalizers first (a never-awaited coroutine imports `warnings` when collected): run
    # during the sandbox's validation import they can trip CPython 3.11's non-reentrant
    # module lock (KeyError: <thread id>, temporalio/sdk-python#585)
    gc.collect()
    try:
        async with Worker(
            client, task_queue=queue, workflows=list(workflows), activities=activities_of(*holders)
        ):
            yield kg
    finally:
        if presence is not None:
            await presence.aclose()
        await mesh.aclose()
        await pool.close()
