"""Detection latency: from a service process being killed (kill -9) to its incident
workflow existing in Temporal.

Everything real and started here: the embedded Temporal dev server, PostgreSQL with
pgvector and Redis (as `aiops dev up` runs them), the full worker (probes run there), the
listener pipeline, and a small HTTP service (tests/degrading_service.py) per run. Each run
registers a fresh service, lets `sync_schedules` create its probe schedule, waits for a
healthy probe, kills the process and times:

- kill -> ServiceUnhealthy published (the event's timestamp, set by the probe activity)
- kill -> IncidentWorkflow started (Temporal's start time of `incident-<fingerprint>`)

The probe interval bounds the first part: a failure waits for the next probe, so it
adds up to one interval (half of it on average) before anything else happens.

    .venv/bin/python bench/detection_latency.py [--runs 20] [--interval 1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis
from cryptography.fernet import Fernet
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
from aiops.events.envelope import Event, decode_entry
from aiops.events.mesh import EventMesh
from aiops.events.routing import IncidentRouter
from aiops.events.store import EventStore
from aiops.knowledge import KnowledgeGraph
from aiops.monitor.schedules import ProbeDefaults, sync_schedules
from aiops.registry import ServiceDefinition, ServiceRegistry
from workers.listener import default_fingerprinter, make_ingestor
from workers.worker import activities_of, activity_holders
from workflows import ALL_WORKFLOWS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from degrading_service import DegradingService

STREAM = "events:bench-monitor"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def first_unhealthy(redis: aioredis.Redis, service: str, deadline: float) -> Event:
    seen = "0-0"
    while time.monotonic() < deadline:
        rows: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
            STREAM, min=f"({seen}" if seen != "0-0" else "-"
        )
        for entry_id, fields in rows:
            seen = entry_id.decode()
            event = decode_entry(STREAM, seen, fields, 1 << 20)
            if event.event_type == "ServiceUnhealthy" and event.service == service:
                return event
        await asyncio.sleep(0.01)
    raise TimeoutError(f"no ServiceUnhealthy for {service}")


async def incident_started(client: Client, workflow_id: str, deadline: float) -> datetime:
    while time.monotonic() < deadline:
        try:
            return (await client.get_workflow_handle(workflow_id).describe()).start_time
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{workflow_id} never started")


async def main(runs: int, interval: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-detect-"))
    stack = DevStack(
        home,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        postgres_port=free_port(),
        redis_port=free_port(),
    )
    print(f"starting servers under {home} ...", flush=True)
    state = (await stack.up()).state
    service = DegradingService(free_port())
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
        holders = activity_holders(pool, Fernet(Fernet.generate_key()), home / "logs", kg, mesh)
        registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
        store = await EventStore.connect(urls["postgres"])
        router = IncidentRouter(
            client,
            task_queue="aiops",
            detector=DefaultDetector(),
            fingerprinter=default_fingerprinter(),
            cool_down_s=5,
            # as the listener holds a storm's later observations (the first goes at once)
            coalesce_s=settings.incident_coalesce_s,
        )
        ingestor = make_ingestor(settings, redis, store, consumer="bench", incidents=router)
        defaults = ProbeDefaults(
            interval_s=interval, timeout_s=0.5, realert_s=3600, stream=STREAM, task_queue="aiops"
        )
        stop = asyncio.Event()
        to_event: list[float] = []
        to_incident: list[float] = []
        async with Worker(
            client,
            task_queue="aiops",
            workflows=ALL_WORKFLOWS,
            activities=activities_of(*holders),
            max_concurrent_activities=100,
        ):
            listening = asyncio.create_task(ingestor.run(stop))
            await ingestor.consumer.discover(force=True)
            print(f"{runs} runs, probe interval {interval:g} s ...", flush=True)
            for i in range(-1, runs):  # run -1 warms up: model load, caches, connections
                name = f"bench-svc-{i + 1}"
                service.start()
                await registry.register(ServiceDefinition(name=name, endpoint=service.url))
                await sync_schedules(client, pool, defaults)
                deadline = time.monotonic() + 60
                while (await registry.get(name)).healthy is not True:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} never probed healthy")
                    await asyncio.sleep(0.02)
                # let a probe tick pass so the kill lands anywhere in the interval
                await asyncio.sleep(interval * ((i * 0.37) % 1))
                killed = datetime.now(UTC)
                service.kill()
                deadline = time.monotonic() + 60 + interval
                event = await first_unhealthy(redis, name, deadline)
                [observation] = router.observe([event])
                started = await incident_started(
                    client, f"incident-{observation.fingerprint}", deadline
                )
                if i >= 0:
                    to_event.append((event.timestamp - killed).total_seconds())
                    to_incident.append((started - killed).total_seconds())
                    print(
                        f"  run {i + 1:>2}: unhealthy after {to_event[-1] * 1000:6.0f} ms, "
                        f"incident after {to_incident[-1] * 1000:6.0f} ms",
                        flush=True,
                    )
                await registry.deregister(name)
            await sync_schedules(client, pool, defaults)
            stop.set()
            await listening

        print()
        print(f"{'':40}{'p50':>9}{'p99':>9}{'max':>9}")
        for label, values in (
            ("kill -> ServiceUnhealthy published", to_event),
            ("kill -> incident workflow started", to_incident),
        ):
            print(
                f"{label:40}{statistics.median(values) * 1000:>7.0f}ms"
                f"{pct(values, 0.99) * 1000:>7.0f}ms{max(values) * 1000:>7.0f}ms"
            )
        after = [b - a for a, b in zip(to_event, to_incident, strict=True)]
        print(
            f"of which after the probe failed (publish -> listener -> incident): "
            f"p50 {statistics.median(after) * 1000:.0f} ms"
        )
        print(
            f"the probe interval ({interval:g} s) bounds the wait for the failing probe: "
            f"a kill waits up to one interval (on average half) for the next probe"
        )
        print(f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on shared CPU (figures are noisy)")
        await store.close()
        await redis.aclose()
        await pool.close()
    finally:
        service.kill()
        stack.down()


if __name__ == "__main__":
    # SIGTERM (a CI timeout, `timeout`) must still run the finally that stops the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.interval))
