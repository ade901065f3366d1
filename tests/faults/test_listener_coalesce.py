"""A storm's later observations wait and go as one signal (AIOPS_INCIDENT_COALESCE_S), and
their entries stay unacknowledged until that signal is with Temporal: a listener killed -9
while it holds them loses nothing, and the listener that claims them counts each once.

Real `python -m workers.listener` processes, the real Temporal dev server (no worker: what
is counted is the observe signals in the incident's history), PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis
from observed import observed_counts
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from aiops.events.envelope import Event, EventType
from aiops.events.mesh import EventMesh

ROOT = Path(__file__).resolve().parents[2]
GROUP = "aiops"
# every call to the server is bounded: a call that hangs fails the test with the listener's
# log instead of stalling it until pytest's timeout
RPC = timedelta(seconds=10)
# A test body that still waits this long fails with the place it waited in its traceback
# (nothing in a body may swallow a CancelledError, or this bound is lost with it)
BODY_S = 60
# the storm after the first event: published in parts, so the listener reads several
# batches of it while the first signal's interval runs
PARTS = 4
PER_PART = 60


def _spawn(env: dict[str, str], log: Path, name: str, **extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.listener", "--incidents", "--consumer", name],
            env={**env, **extra},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _problem(service: str, n: int) -> Event:
    return Event(
        event_type=EventType.SERVICE_ERROR,
        source=service,
        service=service,
        severity="error",
        payload={"message": f"request {n} failed: connection pool of {service} exhausted"},
    )


async def _signals(env: WorkflowEnvironment, workflow_id: str) -> list[int]:
    """The count each observe signal of the incident carried, in order ([] before it starts)."""
    client = env.client
    try:
        history = await client.get_workflow_handle(workflow_id).fetch_history(rpc_timeout=RPC)
    except RPCError:
        return []
    return observed_counts(history)


async def _stored(database_url: str, stream: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events WHERE stream = $1",
            stream,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), int(row["ids"])


def _tail(log: Path) -> str:
    return log.read_text()[-3000:] if log.exists() else ""


async def _until(what: str, log: Path, timeout: float, check: Any) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left > 0:
            try:
                # a check that hangs (a server that stopped answering) fails here too; not
                # asyncio.wait_for, which on Python 3.11 can lose the body's own timeout
                async with asyncio.timeout(left):
                    if await check():
                        return
            except TimeoutError:
                pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + _tail(log)
        await asyncio.sleep(0.1)


def _env(
    temporal_env: WorkflowEnvironment, redis_url: str, database_url: str, prefix: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env.update(
        {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "AIOPS_TASK_QUEUE": f"nobody-{prefix}",
            "AIOPS_LISTENER_STREAMS": f"{prefix}:*",
            "AIOPS_DEAD_LETTER_STREAM": f"{prefix}:dead",
            "AIOPS_LISTENER_GROUP": GROUP,
            "AIOPS_LISTENER_BATCH_SIZE": "500",
            "AIOPS_LISTENER_BLOCK_MS": "100",
            "AIOPS_LISTENER_CLAIM_IDLE_MS": "1000",
            "AIOPS_EVENT_TRUST": "open",
            "AIOPS_LOG_LEVEL": "INFO",
        }
    )
    return env


@contextlib.asynccontextmanager
async def _busy(redis_url: str, stream: str) -> AsyncIterator[None]:
    """Informational events on another stream all along: the streams never go quiet, so
    the listener has no reason to send what it holds before the interval ends (a storm).

    The publisher is stopped by a flag, never cancelled: on Python 3.11 a cancel that comes
    in the loop turn in which redis-py's send completes is lost (the send runs under
    asyncio.wait_for, socket_timeout; CPython gh-86296), so about one cancel in twenty left
    the publisher running, the streams never went quiet and `await task` waited for ever
    (the test's hang). A client of its own, closed once the publisher has returned."""
    client = aioredis.Redis.from_url(redis_url)
    stop = asyncio.Event()

    async def publish() -> None:
        mesh = EventMesh(client)
        n = 0
        while not stop.is_set():
            await mesh.publish_many(
                [Event(event_type="MetricReport", source="filler", payload={"n": n})],
                stream=stream,
            )
            n += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(publish())
    try:
        yield
    finally:
        stop.set()
        try:
            await task
        finally:
            await client.aclose()


async def _storm(
    client: aioredis.Redis,
    stream: str,
    service: str,
    database_url: str,
    temporal_env: WorkflowEnvironment,
    log: Path,
) -> tuple[str, list[Event]]:
    """One problem event, signalled at once; then PARTS batches of the same problem, stored
    and held back. Returns the incident's id and every event sent."""
    mesh = EventMesh(client)
    first = _problem(service, 0)
    await mesh.publish_many([first], stream=stream)
    workflow_id = ""

    async def first_signalled() -> bool:
        nonlocal workflow_id
        stored, _ = await _stored(database_url, stream)
        if stored < 1:
            return False
        ids = [
            w.id
            async for w in temporal_env.client.list_workflows(
                f"TaskQueue='nobody-{service}'", rpc_timeout=RPC
            )
        ]
        if not ids:
            return False
        workflow_id = ids[0]
        return await _signals(temporal_env, workflow_id) == [1]

    # detection latency does not wait for the interval: the first event signals at once
    await _until("the first event's signal", log, 30, first_signalled)
    sent = [first]
    for part in range(PARTS):
        batch = [_problem(service, 1 + part * PER_PART + n) for n in range(PER_PART)]
        sent += batch
        await mesh.publish_many(batch, stream=stream)
        await asyncio.sleep(0.3)  # a batch of its own for the listener

    async def all_stored() -> bool:
        return (await _stored(database_url, stream))[0] == len(sent)

    await _until("the storm to be stored", log, 30, all_stored)
    return workflow_id, sent


@dataclass
class _Scene:
    """A test's stream, its Redis client, and the listeners it spawned (killed at the end)."""

    temporal_env: WorkflowEnvironment
    database_url: str
    redis_url: str
    prefix: str
    env: dict[str, str]
    log: Path
    client: aioredis.Redis
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return f"{self.prefix}:app"

    def spawn(self, name: str, **extra: str) -> subprocess.Popen[bytes]:
        process = _spawn(self.env, self.log, name, **extra)
        self.spawned.append(process)
        return process

    async def pending(self) -> int:
        return int((await self.client.xpending(self.stream, GROUP))["pending"])

    async def storm(self) -> tuple[str, list[Event]]:
        return await _storm(
            self.client, self.stream, self.prefix, self.database_url, self.temporal_env, self.log
        )

    async def end(self, workflow_id: str) -> None:
        handle = self.temporal_env.client.get_workflow_handle(workflow_id)
        await handle.terminate("test done", rpc_timeout=RPC)

    async def until_acked(self, what: str, timeout: float) -> None:
        async def acked() -> bool:
            return await self.pending() == 0

        await _until(what, self.log, timeout, acked)


@pytest_asyncio.fixture
async def scene(
    temporal_env: WorkflowEnvironment,
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[_Scene]:
    client = aioredis.Redis.from_url(redis_url)
    found = _Scene(
        temporal_env,
        database_url,
        redis_url,
        stream_prefix,
        _env(temporal_env, redis_url, database_url, stream_prefix),
        tmp_path / "listener.log",
        client,
    )
    await client.xgroup_create(found.stream, GROUP, id="0", mkstream=True)
    try:
        yield found
    finally:
        for process in found.spawned:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        await client.aclose()


async def test_held_observations_go_as_one_signal_after_the_interval(scene: _Scene) -> None:
    async with asyncio.timeout(BODY_S):
        scene.spawn("a", AIOPS_INCIDENT_COALESCE_S="5", AIOPS_LISTENER_CLAIM_IDLE_MS="60000")
        # the streams stay busy throughout: only the interval ends the hold
        async with _busy(scene.redis_url, f"{scene.prefix}:filler"):
            workflow_id, sent = await scene.storm()
            # stored, not yet signalled: held for the interval, so not yet acknowledged
            assert await _signals(scene.temporal_env, workflow_id) == [1]
            assert await scene.pending() == len(sent) - 1

            async def merged() -> bool:
                return len(await _signals(scene.temporal_env, workflow_id)) == 2

            await _until("the merged signal", scene.log, 30, merged)
            assert await _signals(scene.temporal_env, workflow_id) == [1, len(sent) - 1]
            await scene.until_acked("every entry acknowledged", 10)
        await scene.temporal_env.client.get_workflow_handle(workflow_id).terminate(
            "test done", rpc_timeout=RPC
        )


async def test_held_observations_go_once_the_streams_are_quiet(scene: _Scene) -> None:
    async with asyncio.timeout(BODY_S):
        # an interval far longer than the test: what ends the hold is the streams going quiet
        scene.spawn("a", AIOPS_INCIDENT_COALESCE_S="600", AIOPS_LISTENER_CLAIM_IDLE_MS="3600000")
        async with _busy(scene.redis_url, f"{scene.prefix}:filler"):
            workflow_id, sent = await scene.storm()
            assert await _signals(scene.temporal_env, workflow_id) == [1]
        await scene.until_acked("every entry acknowledged once quiet", 30)
        assert await _signals(scene.temporal_env, workflow_id) == [1, len(sent) - 1]
        await scene.temporal_env.client.get_workflow_handle(workflow_id).terminate(
            "test done", rpc_timeout=RPC
        )


async def test_listener_killed_while_holding_observations_loses_none(
    scene: _Scene, fault_table: Any
) -> None:
    async with asyncio.timeout(BODY_S):
        # an interval far longer than the test, and busy streams: only the kill ends the hold
        victim = scene.spawn(
            "victim", AIOPS_INCIDENT_COALESCE_S="600", AIOPS_LISTENER_CLAIM_IDLE_MS="3600000"
        )
        async with _busy(scene.redis_url, f"{scene.prefix}:filler"):
            workflow_id, sent = await scene.storm()
            held = await scene.pending()
            assert held == len(sent) - 1, "stored events whose signal waits must stay pending"
            victim.kill()
            victim.wait(timeout=10)
        assert await _signals(scene.temporal_env, workflow_id) == [1]

        # it claims what the victim held after AIOPS_LISTENER_CLAIM_IDLE_MS (1 s here)
        scene.spawn("rescuer", AIOPS_INCIDENT_COALESCE_S="0.25")
        await scene.until_acked("the rescuer to claim and acknowledge", 60)
        counts = await _signals(scene.temporal_env, workflow_id)
        counted = sum(counts)
        rows, distinct = await _stored(scene.database_url, scene.stream)
        fault_table.record(
            fault="listener kill -9 holding coalesced observations",
            unit="events",
            sent=len(sent),
            lost=max(0, len(sent) - counted) + max(0, len(sent) - distinct),
            duplicated=max(0, counted - len(sent)) + (rows - distinct),
            note=f"signals {counts}",
        )
        assert rows == distinct == len(sent)
        assert counted == len(sent), counts
        await scene.temporal_env.client.get_workflow_handle(workflow_id).terminate(
            "test done", rpc_timeout=RPC
        )


def test_an_interval_that_claims_would_overtake_is_cut() -> None:
    from aiops.config import Settings
    from workers.listener import coalesce_interval

    assert (
        coalesce_interval(Settings(incident_coalesce_s=0.25, listener_claim_idle_ms=30_000)) == 0.25
    )
    assert coalesce_interval(Settings(incident_coalesce_s=0, listener_claim_idle_ms=100)) == 0
    # entries held 10 s would be claimed after 2 s
    assert coalesce_interval(Settings(incident_coalesce_s=10, listener_claim_idle_ms=2_000)) == 0.5


async def _xreadgroup_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))


async def test_an_idle_listener_waits_on_redis_as_configured(scene: _Scene) -> None:
    """With incidents coalescing and nothing to hold, a read blocks for the configured time
    (1 s here), not the 50 ms a listener holding observations uses to notice quiet streams."""
    async with asyncio.timeout(BODY_S):
        scene.spawn(
            "a",
            AIOPS_INCIDENT_COALESCE_S="5",
            AIOPS_LISTENER_BLOCK_MS="1000",
            AIOPS_LISTENER_CLAIM_IDLE_MS="3600000",
        )

        async def reading() -> bool:
            consumers = await scene.client.xinfo_consumers(scene.stream, GROUP)
            return any(c["name"] == b"a" for c in consumers)

        await _until("the listener to read", scene.log, 30, reading)
        await asyncio.sleep(1.0)
        before = await _xreadgroup_calls(scene.client)
        await asyncio.sleep(4.0)
        reads = await _xreadgroup_calls(scene.client) - before
    assert reads <= 8, f"{reads} reads in 4 s of quiet"
