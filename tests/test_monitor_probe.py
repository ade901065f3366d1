"""Health probes against a real process that degrades, fails and comes back: transitions
kept in the registry row, events on a real Redis stream, probe concurrency limited at run
time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from degrading_service import DegradingService

from aiops.devstack.ports import free_port
from aiops.events.envelope import Event, decode_entry
from aiops.events.mesh import EventMesh
from aiops.monitor.limits import BUILTIN_LIMITS, LimitsCache, LimitsStore
from aiops.monitor.models import ProbeInput
from aiops.monitor.probe import HealthProber
from aiops.registry import ServiceDefinition, ServiceRegistry


@pytest.fixture
def service() -> Iterator[DegradingService]:
    svc = DegradingService(free_port()).start()
    yield svc
    svc.kill()


async def read_events(client: aioredis.Redis, stream: str) -> list[Event]:
    rows: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(stream)  # type: ignore[assignment]
    return [decode_entry(stream, i.decode(), fields, 1 << 20) for i, fields in rows]


async def register(pool: asyncpg.Pool, name: str, url: str, **extra: Any) -> None:
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    await registry.register(ServiceDefinition(name=name, endpoint=url, **extra))


async def test_transitions_are_decided_from_the_registry_row(
    pool: asyncpg.Pool, mesh: EventMesh, service: DegradingService, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:monitor"
    await register(pool, "api", service.url, critical=True)
    request = ProbeInput(service="api", timeout_s=2, realert_s=3600, stream=stream)
    first = HealthProber(pool, mesh)

    ok = await first.probe(request, "run-1")
    assert ok.healthy is True and ok.previous is None and ok.status_code == 200
    assert ok.published == ["MetricReport"]  # unknown -> healthy is not a recovery

    service.kill()
    down = await first.probe(request, "run-2")
    assert down.healthy is False and down.previous is True and down.status_code is None
    assert down.error and down.published == ["ServiceUnhealthy"]
    # still down, within the re-alert interval: recorded, not published again
    again = await first.probe(request, "run-3")
    assert again.healthy is False and again.previous is False and again.published == []

    # another prober (another worker) knows nothing in memory: the row says unhealthy
    second = HealthProber(pool, mesh)
    realert = await second.probe(request.model_copy(update={"realert_s": 0}), "run-4")
    assert realert.published == ["ServiceUnhealthy"]

    service.start()
    back = await second.probe(request, "run-5")
    assert back.healthy is True and back.previous is False
    assert back.published == ["ServiceRecovered", "MetricReport"]

    events = await read_events(mesh.redis, stream)
    kinds = [e.event_type for e in events]
    assert kinds == [
        "MetricReport",
        "ServiceUnhealthy",
        "ServiceUnhealthy",
        "ServiceRecovered",
        "MetricReport",
    ]
    unhealthy, repeat, recovered = events[1], events[2], events[3]
    assert unhealthy.service == "api" and unhealthy.severity == "critical"
    assert unhealthy.payload["latency_ms"] >= 0 and unhealthy.payload["error"]
    assert unhealthy.payload["previous"] == "healthy" and unhealthy.payload["repeat"] is False
    assert repeat.payload["repeat"] is True
    assert repeat.payload["unhealthy_since"] == unhealthy.payload["unhealthy_since"]
    # the same text every time: one incident per service, however the check fails
    assert repeat.payload["message"] == unhealthy.payload["message"]
    assert recovered.payload["status_code"] == 200 and recovered.payload["latency_ms"] > 0
    assert recovered.payload["down_for_s"] > 0
    row = await pool.fetchrow(
        "SELECT healthy, last_latency_ms, unhealthy_since, last_alert_at FROM services"
    )
    assert row is not None and row["healthy"] is True and row["last_latency_ms"] > 0
    assert row["unhealthy_since"] is None and row["last_alert_at"] is None


async def test_slow_and_failing_answers(
    pool: asyncpg.Pool, mesh: EventMesh, service: DegradingService, stream_prefix: str
) -> None:
    await register(pool, "slow", service.url)
    prober = HealthProber(pool, mesh)
    request = ProbeInput(service="slow", timeout_s=0.3, realert_s=0, stream=f"{stream_prefix}:m")

    service.control("slow", delay_ms=150)
    slow = await prober.probe(request, "a")
    assert slow.healthy is True and slow.latency_ms is not None and slow.latency_ms >= 150

    service.control("slow", delay_ms=1500)
    started = time.monotonic()
    timed_out = await prober.probe(request, "b")
    assert time.monotonic() - started < 1.0  # the deadline held, the answer was not awaited
    assert timed_out.healthy is False and "no answer within 0.3 s" in (timed_out.error or "")

    service.control("fail")
    failed = await prober.probe(request, "c")
    assert failed.healthy is False and failed.status_code == 503
    assert failed.error == "HTTP 503 Service Unavailable"

    # a retried probe run publishes the same event ids (the event store keeps one)
    await pool.execute("UPDATE services SET healthy = true")
    retried = await prober.probe(request, "c")
    assert retried.published == ["ServiceUnhealthy"]
    events = await read_events(mesh.redis, f"{stream_prefix}:m")
    ids = [e.id for e in events if e.event_type == "ServiceUnhealthy"]
    assert len(ids) == 3 and ids[1] == ids[2] and ids[0] != ids[1]


async def test_deregistered_or_unprobeable_services_are_skipped(
    pool: asyncpg.Pool, mesh: EventMesh, stream_prefix: str
) -> None:
    prober = HealthProber(pool, mesh)
    request = ProbeInput(service="gone", timeout_s=1, realert_s=0, stream=f"{stream_prefix}:m")
    assert (await prober.probe(request, "x")).skipped == "not registered"
    await register(pool, "cache", "redis://127.0.0.1:6379")
    cache = await prober.probe(request.model_copy(update={"service": "cache"}), "y")
    assert cache.skipped == "no http health endpoint"
    assert await mesh.redis.exists(f"{stream_prefix}:m") == 0


async def test_max_agents_limits_concurrent_probes_at_run_time(
    pool: asyncpg.Pool, mesh: EventMesh, service: DegradingService, stream_prefix: str
) -> None:
    names = [f"svc{i}" for i in range(4)]
    for name in names:
        await register(pool, name, service.url)
    service.control("slow", delay_ms=300)
    store = LimitsStore(pool, BUILTIN_LIMITS)
    prober = HealthProber(pool, mesh, LimitsCache(store, refresh_s=0))

    async def probe_all() -> float:
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                prober.probe(
                    ProbeInput(service=n, timeout_s=5, realert_s=0, stream=f"{stream_prefix}:m"),
                    f"run-{n}-{started}",
                )
                for n in names
            )
        )
        assert all(r.healthy for r in results)
        return time.monotonic() - started

    await store.set("max_agents", 1)
    serial = await probe_all()
    assert prober.limiter.capacity == 1 and serial >= 1.2  # four 300 ms answers, one at a time
    await store.set("max_agents", 4)
    parallel = await probe_all()
    assert prober.limiter.capacity == 4 and parallel < serial / 2


async def test_a_failure_threshold_hides_blips_and_reports_what_lasts(
    pool: asyncpg.Pool, mesh: EventMesh, service: DegradingService, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:monitor"
    await register(pool, "api", service.url)
    request = ProbeInput(
        service="api", timeout_s=2, realert_s=3600, stream=stream, unhealthy_after_s=0.5
    )
    prober = HealthProber(pool, mesh)
    assert (await prober.probe(request, "r1")).healthy is True

    service.kill()  # a blip: down for one probe, then back
    assert (await prober.probe(request, "r2")).published == []
    service.start()
    assert (await prober.probe(request, "r3")).published == ["MetricReport"]  # no recovery

    service.kill()  # an outage: still down after the threshold
    assert (await prober.probe(request, "r4")).published == []
    await asyncio.sleep(0.6)
    down = await prober.probe(request, "r5")
    assert down.published == ["ServiceUnhealthy"]
    service.start()
    assert (await prober.probe(request, "r6")).published == ["ServiceRecovered", "MetricReport"]

    kinds = [e.event_type for e in await read_events(mesh.redis, stream)]
    assert kinds.count("ServiceUnhealthy") == 1 and kinds.count("ServiceRecovered") == 1
    unhealthy = next(
        e for e in await read_events(mesh.redis, stream) if e.event_type == "ServiceUnhealthy"
    )
    assert unhealthy.payload["repeat"] is False
