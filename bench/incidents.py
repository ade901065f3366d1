"""Incident latency and throughput, from XADD of a problem event to a healed outcome.

Everything real and in this process's reach: the embedded Temporal dev server, PostgreSQL
with pgvector and Redis (durable settings, as `aiops dev up` runs them), the listener
pipeline, the full worker, the simulated adapter. The baseline, measured in the same run on
the same servers, is a bare workflow that runs one no-op activity.

    .venv/bin/python bench/incidents.py [--sequential 30] [--burst 60]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from aiops.config import load_settings
from aiops.db.migrate import migrate
from aiops.db.pool import create_pool
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port
from aiops.embeddings import CachedEmbedder, MiniLMEmbedder
from aiops.events.detection import DefaultDetector
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.events.routing import IncidentRouter
from aiops.events.store import EventStore
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.incident import IncidentStatus
from aiops.policy.models import ActionSpec
from workers.listener import default_fingerprinter, make_ingestor
from workers.worker import activities_of, activity_holders
from workflows import ALL_WORKFLOWS


@activity.defn(name="bench_noop")
async def noop(value: int) -> int:
    return value


@workflow.defn(name="BareWorkflow", sandboxed=False)  # defined in __main__
class BareWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        result: int = await workflow.execute_activity(
            "bench_noop", value, start_to_close_timeout=timedelta(seconds=30)
        )
        return result


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def seed(kg: KnowledgeGraph) -> None:
    problem = await kg.add_problem(
        ProblemIn(
            description="Import requests time out with large bookmark files",
            category="timeout",
            context={"service": "import-service"},
        )
    )
    await kg.add_solution(
        problem.id,
        SolutionIn(
            description="Clear the import cache",
            actions=[
                ActionSpec(
                    action_type="cache_clear",
                    target="import-service",
                    parameters={"adapter": "simulated", "success_probability": 1.0},
                )
            ],
        ),
    )


async def healed_after(client: Client, incident_id: str, since: float) -> float:
    """Seconds from `since` (epoch) to the close of the incident's HealingWorkflow."""
    while True:
        try:
            status = await client.get_workflow_handle(incident_id).query(
                "status", result_type=IncidentStatus
            )
            if status.outcome is not None and status.healing_workflow_id is None:
                raise RuntimeError(f"{incident_id} ended {status.outcome}, not healed")
            if status.healing_workflow_id:
                desc = await client.get_workflow_handle(status.healing_workflow_id).describe()
                if desc.close_time is not None:
                    if status.healing_result and status.healing_result.outcome != "healed":
                        raise RuntimeError(f"{incident_id}: {status.healing_result.detail}")
                    return desc.close_time.timestamp() - since
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise  # not found: the listener or the incident has not started it yet
        await asyncio.sleep(0.02)


async def main(sequential: int, burst: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-"))
    stack = DevStack(
        home,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        postgres_port=free_port(),
        redis_port=free_port(),
    )
    print(f"starting servers under {home} ...", flush=True)
    state = (await stack.up()).state
    try:
        urls = {name: svc.url for name, svc in state.services.items()}
        await migrate(urls["postgres"], 384)
        settings = load_settings().model_copy(
            update={
                "database_url": urls["postgres"],
                "redis_url": urls["redis"],
                "temporal_address": urls["temporal"],
                "listener_streams": "events:bench*",
                "listener_block_ms": 50,
            }
        )
        client = await Client.connect(urls["temporal"], data_converter=pydantic_data_converter)
        pool = await create_pool(urls["postgres"], max_size=20)
        redis = aioredis.Redis.from_url(urls["redis"])
        mesh = EventMesh(redis)
        kg = KnowledgeGraph(pool, CachedEmbedder(MiniLMEmbedder()))
        await seed(kg)
        # every incident acts on the same target: lift the rate limit, keep everything else
        policy = home / "policy.yaml"
        policy.write_text("rate_limit:\n  max_actions: 100000\n")
        holders = activity_holders(
            pool, Fernet(Fernet.generate_key()), home / "logs", kg, mesh, policy
        )
        store = await EventStore.connect(urls["postgres"])
        router = IncidentRouter(
            client,
            task_queue="aiops",
            detector=DefaultDetector(),
            fingerprinter=default_fingerprinter(),
            cool_down_s=5,
        )
        ingestor = make_ingestor(settings, redis, store, consumer="bench", incidents=router)
        stop = asyncio.Event()
        async with Worker(
            client,
            task_queue="aiops",
            workflows=[*ALL_WORKFLOWS, BareWorkflow],
            activities=[*activities_of(*holders), noop],
            max_concurrent_activities=100,
        ):
            listening = asyncio.create_task(ingestor.run(stop))
            await ingestor.consumer.discover(force=True)

            async def incident(i: int) -> float:
                # a service per incident: each event is its own problem fingerprint
                event = Event(
                    event_type="ServiceTimeout",
                    source=f"import-service-{i}",
                    payload={"message": "bookmark import timed out after 30s on a large file"},
                )
                started = time.time()
                await mesh.publish(event, stream="events:bench")
                [observation] = router.observe([event])
                return await healed_after(client, f"incident-{observation.fingerprint}", started)

            async def bare(i: int) -> float:
                started = time.time()
                await client.execute_workflow(
                    BareWorkflow.run, i, id=f"bare-{uuid.uuid4().hex}", task_queue="aiops"
                )
                return time.time() - started

            await incident(-1)  # warm up: model load, caches, connections
            await bare(-1)
            print(f"sequential: {sequential} incidents one at a time ...", flush=True)
            inc_lat = [await incident(i) for i in range(sequential)]
            bare_lat = [await bare(i) for i in range(sequential)]
            print(f"burst: {burst} incidents at once ...", flush=True)
            t0 = time.time()
            await asyncio.gather(*(incident(10_000 + i) for i in range(burst)))
            inc_rate = burst / (time.time() - t0)
            t0 = time.time()
            await asyncio.gather(*(bare(10_000 + i) for i in range(burst)))
            bare_rate = burst / (time.time() - t0)
            stop.set()
            await listening

        p50, p99 = statistics.median(inc_lat), pct(inc_lat, 0.99)
        b50, b99 = statistics.median(bare_lat), pct(bare_lat, 0.99)
        print()
        print(f"{'':34}{'p50':>9}{'p99':>9}{'per s':>9}")
        rows = [
            ("incident: XADD -> healed", p50, p99, inc_rate),
            ("bare one-activity workflow", b50, b99, bare_rate),
        ]
        for label, m50, m99, rate in rows:
            print(f"{label:34}{m50 * 1000:>7.0f}ms{m99 * 1000:>7.0f}ms{rate:>9.1f}")
        print(
            f"incident cost vs bare: latency x{p50 / b50:.1f} (p50), "
            f"throughput x{bare_rate / inc_rate:.1f}"
        )
        print(
            f"target: p50 < 1000 ms -> {'met' if p50 < 1.0 else 'NOT met'}; "
            f"cost < 4x bare -> {'met' if p50 / b50 < 4 else 'NOT met'} (latency)"
        )
        print(f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        await store.close()
        await redis.aclose()
        await pool.close()
    finally:
        stack.down()


if __name__ == "__main__":
    # SIGTERM (a CI timeout, `timeout`) must still run the finally that stops the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--burst", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(main(args.sequential, args.burst))
