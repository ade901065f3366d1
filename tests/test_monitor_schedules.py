"""Probe schedules on the real Temporal dev server, with a real worker, against a real process
that gets slower, fails, is killed and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography.fernet import Fernet
from degrading_service import DegradingService
from temporalio.client import Client, ScheduleOverlapPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from test_monitor_probe import read_events

from activities.monitor import MonitorActivities
from aiops.devstack.ports import free_port
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.monitor.models import ProbeResult
from aiops.monitor.schedules import ProbeDefaults, desired_probe, sync_schedules
from aiops.registry import ServiceDefinition, ServiceRegistry
from workers.worker import activities_of
from workflows.monitor import ProbeServiceWorkflow

HISTORIES = Path(__file__).parent / "histories"


@pytest.fixture
def service() -> Iterator[DegradingService]:
    svc = DegradingService(free_port()).start()
    yield svc
    svc.kill()


async def wait_for_events(
    mesh: EventMesh,
    stream: str,
    until: Callable[[list[Event]], bool],
    timeout: float = 30.0,
) -> list[Event]:
    deadline = time.monotonic() + timeout
    while True:
        events = await read_events(mesh.redis, stream)
        if until(events):
            return events
        if time.monotonic() > deadline:
            kinds = [e.event_type for e in events]
            raise AssertionError(f"timed out; the stream holds {kinds}")
        await asyncio.sleep(0.2)


def of_type(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.event_type == kind]


async def sync_until(
    client: Client, pool: asyncpg.Pool, defaults: ProbeDefaults, done: Callable[..., bool]
) -> None:
    # the schedule list is eventually consistent: a change shows up within moments
    for _ in range(50):
        if done(await sync_schedules(client, pool, defaults)):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("sync_schedules never got there")


async def test_a_schedule_per_service_catches_a_real_degradation(
    temporal_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    mesh: EventMesh,
    service: DegradingService,
    stream_prefix: str,
) -> None:
    client = temporal_env.client
    queue = f"monitor-{uuid.uuid4().hex[:8]}"
    name = f"deg-{uuid.uuid4().hex[:8]}"
    schedule_id = f"probe-{name}"
    stream = f"{stream_prefix}:monitor"
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    definition = ServiceDefinition(
        name=name,
        endpoint=service.url,
        metadata={"probe_interval_s": 1, "probe_timeout_s": 0.8},
    )
    await registry.register(definition)
    await registry.register(ServiceDefinition(name=f"{name}-q", endpoint="redis://127.0.0.1:1"))
    defaults = ProbeDefaults(
        interval_s=60, timeout_s=5, realert_s=3600, stream=stream, task_queue=queue
    )
    try:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[ProbeServiceWorkflow],
            activities=activities_of(MonitorActivities(pool, mesh)),
        ):
            report = await sync_schedules(client, pool, defaults)
            assert report.created == [schedule_id] and report.unprobed == [f"{name}-q"]
            described = await client.get_schedule_handle(schedule_id).describe()
            assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
            assert described.schedule.spec.intervals[0].every == timedelta(seconds=1)

            await wait_for_events(mesh, stream, lambda e: len(of_type(e, "MetricReport")) >= 2)
            assert (await registry.get(name)).healthy is True

            # the service degrades by itself: each answer 150 ms slower, then 503 for good
            service.control("degrade", step_ms=150, fail_ms=500)
            events = await wait_for_events(
                mesh, stream, lambda e: bool(of_type(e, "ServiceUnhealthy"))
            )
            [unhealthy] = of_type(events, "ServiceUnhealthy")
            assert unhealthy.service == name and unhealthy.payload["status_code"] == 503
            assert unhealthy.payload["latency_ms"] >= 0
            latencies = [e.payload["latency_ms"] for e in of_type(events, "MetricReport")]
            assert max(latencies) >= 300  # it really got slower before it failed

            # killed: still unhealthy, probed again and again, reported once (re-alert 1 h)
            service.kill()
            checked = (await registry.get(name)).last_checked_at
            deadline = time.monotonic() + 20
            while (await registry.get(name)).last_checked_at == checked:
                assert time.monotonic() < deadline, "no probe after the kill"
                await asyncio.sleep(0.2)
            assert len(of_type(await read_events(mesh.redis, stream), "ServiceUnhealthy")) == 1

            service.start()
            events = await wait_for_events(
                mesh, stream, lambda e: bool(of_type(e, "ServiceRecovered"))
            )
            [recovered] = of_type(events, "ServiceRecovered")
            assert recovered.payload["status_code"] == 200 and recovered.payload["latency_ms"] > 0
            assert recovered.payload["down_for_s"] > 0
            assert (await registry.get(name)).healthy is True

            await replay_an_unhealthy_probe(client, name)

            # nothing changed: left alone; a new interval: updated in place
            await sync_until(client, pool, defaults, lambda r: r.unchanged == 1)
            await registry.register(
                definition.model_copy(update={"metadata": {"probe_interval_s": 2}})
            )
            await sync_until(client, pool, defaults, lambda r: r.updated == [schedule_id])
            described = await client.get_schedule_handle(schedule_id).describe()
            assert described.schedule.spec.intervals[0].every == timedelta(seconds=2)

            # deregistered: its schedule goes
            await registry.deregister(name)
            await sync_until(client, pool, defaults, lambda r: r.deleted == [schedule_id])
            with pytest.raises(RPCError) as gone:
                await client.get_schedule_handle(schedule_id).describe()
            assert gone.value.status == RPCStatusCode.NOT_FOUND
    finally:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(schedule_id).delete()


async def replay_an_unhealthy_probe(client: Client, service: str) -> None:
    """A scheduled run that found the service unhealthy replays against the current code;
    EXPORT_HISTORIES=1 saves it to tests/histories/, which CI replays."""
    async for execution in client.list_workflows("WorkflowType = 'ProbeServiceWorkflow'"):
        if not execution.id.startswith(f"probe-{service}-") or execution.close_time is None:
            continue
        handle = client.get_workflow_handle(
            execution.id, run_id=execution.run_id, result_type=ProbeResult
        )
        result = await handle.result()
        if "ServiceUnhealthy" not in result.published:
            continue
        history = await handle.fetch_history()
        replayer = Replayer(
            workflows=[ProbeServiceWorkflow], data_converter=pydantic_data_converter
        )
        await replayer.replay_workflow(history)
        if os.environ.get("EXPORT_HISTORIES"):
            (HISTORIES / "probe-service-unhealthy.json").write_text(history.to_json())
        return
    raise AssertionError("no finished probe run published ServiceUnhealthy")


def test_desired_probe_from_metadata_and_defaults() -> None:
    defaults = ProbeDefaults(interval_s=30, timeout_s=5, realert_s=300, stream="events:monitor")
    plain = desired_probe("api", {}, defaults)
    assert plain.schedule_id == "probe-api" and plain.interval_s == 30
    assert plain.request.timeout_s == 5 and plain.request.stream == "events:monitor"
    tuned = desired_probe("api", {"probe_interval_s": 5, "probe_timeout_s": 1.5}, defaults)
    assert tuned.interval_s == 5 and tuned.request.timeout_s == 1.5
    assert tuned.config_hash != plain.config_hash
    # a malformed override falls back to the default rather than breaking every probe
    assert desired_probe("api", {"probe_interval_s": "soon"}, defaults).interval_s == 30
    schedule = tuned.schedule()
    assert (
        schedule.state.note == tuned.note and schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    )
