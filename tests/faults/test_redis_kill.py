"""kill -9 of Redis under load: every event a producer was told was accepted is stored
exactly once once Redis is back.

Redis runs as the dev stack runs it (AOF on, fsync every second: a killed process loses
nothing it acknowledged, since its writes are in the OS already), on a port of its own so
the other tests' Redis lives on. A producer publishes with the mesh's own client (which
retries while Redis is away, and may so add an entry twice); a real listener process
stores; Redis is killed -9 in the middle and started again on the same files.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from test_events_helpers import mesh_settings, spawn_listener

from aiops.devstack.ports import free_port
from aiops.devstack.servers import RedisServer
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh

SENT = 20_000
CHUNK = 500


async def _ping(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        client = aioredis.Redis.from_url(url)
        try:
            if await client.ping():
                return
        except (OSError, aioredis.ConnectionError, aioredis.BusyLoadingError):
            pass
        finally:
            await client.aclose()
        assert time.monotonic() < deadline, "Redis did not come back"
        await asyncio.sleep(0.1)


async def test_redis_kill_9_under_load(
    database_url: str, stream_prefix: str, tmp_path: Path, fault_table: Any
) -> None:
    server = RedisServer(tmp_path, free_port())
    record = server.start()
    url = server.url()
    await _ping(url, 30)
    settings = mesh_settings(url, database_url, stream_prefix)
    stream = f"{stream_prefix}:load"
    client = aioredis.Redis.from_url(url)
    await client.xgroup_create(stream, settings.listener_group, id="0", mkstream=True)
    listener = spawn_listener(settings, tmp_path / "listener.log")
    mesh = EventMesh(aioredis.Redis.from_url(url))
    events = [
        Event(event_type="MetricReport", source="load", payload={"n": n}) for n in range(SENT)
    ]
    accepted: set[Any] = set()
    quarter = asyncio.Event()
    killed_at = 0
    try:

        async def produce() -> None:
            for start in range(0, SENT, CHUNK):
                part = events[start : start + CHUNK]
                ids = await mesh.publish_many(part, stream=stream)
                assert len(ids) == len(part)
                accepted.update(e.id for e in part)
                if len(accepted) >= SENT // 4:
                    quarter.set()
                await asyncio.sleep(0.02)

        producing = asyncio.create_task(produce())
        await quarter.wait()
        killed_at = len(accepted)
        os.kill(record.pid, signal.SIGKILL)
        await asyncio.sleep(1.0)  # producer and listener meet a dead Redis
        record = server.start()
        await _ping(url, 30)
        await asyncio.wait_for(producing, timeout=120)

        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + 120
            while True:
                rows = await conn.fetch(
                    "SELECT id, count(*) AS n FROM events WHERE stream = $1 GROUP BY id", stream
                )
                stored = {r["id"]: int(r["n"]) for r in rows}
                if accepted <= set(stored):
                    break
                assert time.monotonic() < deadline, (
                    f"stored {len(stored)} of {len(accepted)}: "
                    f"{(tmp_path / 'listener.log').read_text()[-2000:]}"
                )
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
    finally:
        if listener.poll() is None:
            listener.terminate()
        listener.wait(timeout=60)
        await mesh.aclose()
        await client.aclose()
        os.kill(record.pid, signal.SIGTERM)

    lost = len(accepted - set(stored))
    duplicated = sum(n - 1 for n in stored.values())
    fault_table.record(
        fault="redis kill -9 (1 listener, 1 producer)",
        unit="events",
        sent=len(accepted),
        lost=lost,
        duplicated=duplicated,
        note=f"killed after {killed_at} accepted; AOF, fsync every second",
    )
    assert (lost, duplicated) == (0, 0)
