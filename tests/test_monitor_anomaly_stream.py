"""The anomaly detector on real Redis streams: its own consumer group, Anomaly events
published, baselines snapshotted and restored across a restart, the cache size changed
at run time."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from test_monitor_probe import read_events

from aiops.events.consumer import StreamConsumer
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.monitor.anomaly import AnomalyDetector, DetectorConfig
from aiops.monitor.anomaly_consumer import AnomalyMonitor, snapshot_key
from aiops.monitor.limits import BUILTIN_LIMITS, LimitsCache, LimitsStore


@pytest_asyncio.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def make_monitor(
    client: aioredis.Redis, prefix: str, limits: LimitsCache | None = None, name: str = "m1"
) -> AnomalyMonitor:
    consumer = StreamConsumer(
        client,
        patterns=[f"{prefix}:app*"],
        group="aiops-anomaly",
        consumer=name,
        dead_letter_stream=f"{prefix}:dead",
        batch_size=100,
        block_ms=50,
        claim_idle_ms=1000,
        dead_letter_maxlen=1000,
    )
    return AnomalyMonitor(
        consumer,
        AnomalyDetector(DetectorConfig(warmup=20)),
        EventMesh(client),
        stream=f"{prefix}:monitor",
        limits=limits,
        snapshot_prefix=f"{prefix}:anomaly:",
    )


def metric_events(values: list[float], service: str = "api") -> list[Event]:
    return [
        Event(event_type="MetricReport", source=service, payload={"memory_usage": v, "pid": 7})
        for v in values
    ]


async def run_until(monitor: AnomalyMonitor, entries: int, timeout: float = 20.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while monitor.stats.entries < entries:
            assert time.monotonic() < deadline, f"processed only {monitor.stats.entries}"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


async def test_metric_events_on_redis_give_one_anomaly(
    client: aioredis.Redis, stream_prefix: str
) -> None:
    rng = random.Random(1)
    mesh = EventMesh(client)
    app = f"{stream_prefix}:app"
    # the listener's group exists on the stream too; the detector must not take its entries
    await client.xgroup_create(app, "aiops", id="0", mkstream=True)
    normal = [rng.gauss(40, 2) for _ in range(100)]
    leak = [rng.gauss(85, 2) for _ in range(30)]
    await mesh.publish_many(metric_events(normal + leak), stream=app)
    await mesh.publish(Event(event_type="MetricReport", source="api"), stream=app)  # no numbers
    await client.xadd(app, {"event": b"not json"})  # invalid: skipped and acknowledged

    monitor = make_monitor(client, stream_prefix)
    await run_until(monitor, 132)

    out = await read_events(client, f"{stream_prefix}:monitor")
    assert [e.event_type for e in out] == ["Anomaly"]
    anomaly = out[0].payload
    assert anomaly["service"] == "api" and anomaly["metric"] == "memory_usage"
    assert anomaly["direction"] == "above" and anomaly["value"] > 75
    assert 36 < anomaly["baseline"] < 44 and anomaly["z"] >= 4
    assert out[0].service == "api" and out[0].causation_id is not None
    assert monitor.stats.samples == 130 and monitor.stats.anomalies == 1
    groups = {g["name"].decode(): g for g in await client.xinfo_groups(app)}
    assert groups["aiops-anomaly"]["pending"] == 0
    assert groups["aiops"]["pending"] == 0 and groups["aiops"]["last-delivered-id"] == b"0-0"


async def test_baselines_survive_a_restart(client: aioredis.Redis, stream_prefix: str) -> None:
    rng = random.Random(2)
    mesh = EventMesh(client)
    app = f"{stream_prefix}:app"
    await mesh.publish_many(metric_events([rng.gauss(200, 10) for _ in range(60)]), stream=app)
    first = make_monitor(client, stream_prefix)
    await run_until(first, 60)
    assert await client.exists(snapshot_key(f"{stream_prefix}:anomaly:", ("api", "memory_usage")))

    # a new process: nothing in memory, the baseline comes back from Redis, no warm-up
    second = make_monitor(client, stream_prefix, name="m2")
    await mesh.publish_many(metric_events([600.0] * 3), stream=app)
    await run_until(second, 3)
    assert second.stats.restored == 1
    out = await read_events(client, f"{stream_prefix}:monitor")
    assert [e.event_type for e in out] == ["Anomaly"]
    assert 180 < out[0].payload["baseline"] < 220 and out[0].payload["samples"] == 63


async def test_cache_size_follows_the_run_time_limit(
    client: aioredis.Redis, pool: asyncpg.Pool, stream_prefix: str
) -> None:
    store = LimitsStore(pool, BUILTIN_LIMITS)
    await store.set("anomaly_cache_size", 2)
    monitor = make_monitor(client, stream_prefix, LimitsCache(store, refresh_s=0))
    mesh = EventMesh(client)
    events = [e for name in ("a", "b", "c", "d") for e in metric_events([1.0, 2.0], service=name)]
    await mesh.publish_many(events, stream=f"{stream_prefix}:app")
    await run_until(monitor, 8)
    assert monitor.detector.capacity == 2 and len(monitor.detector) == 2
    # evicted baselines were snapshotted, not lost
    for name in ("a", "b", "c", "d"):
        key = snapshot_key(f"{stream_prefix}:anomaly:", (name, "memory_usage"))
        assert await client.exists(key), name
    await store.set("anomaly_cache_size", 50)
    await mesh.publish_many(metric_events([1.0], service="e"), stream=f"{stream_prefix}:app")
    await run_until(monitor, 9)
    assert monitor.detector.capacity == 50
