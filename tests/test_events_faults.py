"""Faults with real processes: a listener SIGTERMed and one killed -9 mid-batch, Redis
restarted and PostgreSQL restarted during a run. The store ends with every event once."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from test_events_helpers import mesh_settings, pending, spawn_listener, wait_for

from aiops.db.migrate import migrate
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh

TEST_EMBEDDING_DIM = 384


async def _stored(database_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT count(*) AS n, count(DISTINCT id) AS d FROM events")
        assert row is not None
        return int(row["n"]), int(row["d"])
    finally:
        await conn.close()


async def _stored_ids(database_url: str) -> set[object]:
    conn = await asyncpg.connect(database_url)
    try:
        return {r["id"] for r in await conn.fetch("SELECT id FROM events")}
    finally:
        await conn.close()


async def _pending_of(client: aioredis.Redis, stream: str, group: str, consumer: str) -> int:
    rows = await client.xpending_range(stream, group, "-", "+", 10_000, consumername=consumer)
    return len(rows)


def _stop(process: subprocess.Popen[bytes], sig: int, timeout: float = 20) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout=timeout)


async def test_sigterm_finishes_the_batch_and_kill_9_loses_nothing(
    redis_url: str, database_url: str, stream_prefix: str, tmp_path: Path
) -> None:
    settings = mesh_settings(
        redis_url,
        database_url,
        stream_prefix,
        listener_batch_size=500,
        listener_claim_idle_ms=1000,
    )
    stream = f"{stream_prefix}:load"
    group = settings.listener_group
    total = 40_000
    client = aioredis.Redis.from_url(redis_url)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        events = [
            Event(event_type="MetricReport", source="load", payload={"i": i, "pad": "x" * 150})
            for i in range(total)
        ]
        await EventMesh(client).publish_many(events, stream=stream)

        graceful = spawn_listener(settings, tmp_path / "a.log", "--consumer", "a")
        processes.append(graceful)

        async def some_stored() -> bool:
            return (await _stored(database_url))[0] >= 3000

        await wait_for(some_stored, 30, "the first listener to store events")
        assert await asyncio.to_thread(_stop, graceful, signal.SIGTERM) == 0
        # it finished its batch: nothing of its own is pending, and it left the group
        consumers = {c["name"] for c in await client.xinfo_consumers(stream, group)}
        assert b"a" not in consumers
        after_sigterm = (await _stored(database_url))[0]
        assert 0 < after_sigterm < total

        # two listener processes share the group; one of them is killed mid-batch
        victim = spawn_listener(settings, tmp_path / "b.log", "--consumer", "b")
        rescuer = spawn_listener(settings, tmp_path / "c.log", "--consumer", "c")
        processes += [victim, rescuer]

        async def both_working() -> bool:
            consumers = {c["name"] for c in await client.xinfo_consumers(stream, group)}
            stored = (await _stored(database_url))[0]
            return {b"b", b"c"} <= consumers and stored >= after_sigterm + 5000

        await wait_for(both_working, 30, "both listeners to store events")
        victim.kill()  # SIGKILL: no batch finished, no acknowledgement, no goodbye
        victim.wait(timeout=10)
        held = await _pending_of(client, stream, group, "b")
        assert held > 0, "the listener should have died holding a batch"

        async def all_stored() -> bool:
            return (await _stored(database_url))[0] >= total

        await wait_for(all_stored, 60, "every event to be stored")

        async def all_acked() -> bool:
            return await pending(client, stream, group) == 0

        await wait_for(all_acked, 20, "every entry to be acknowledged")
        n, distinct = await _stored(database_url)
        assert n == distinct == total
        assert await _stored_ids(database_url) == {e.id for e in events}
        assert await client.xlen(settings.dead_letter_stream) == 0
        assert await asyncio.to_thread(_stop, rescuer, signal.SIGTERM) == 0
        log = (tmp_path / "c.log").read_text()
        claimed = sum(int(n) for n in re.findall(r"claimed (\d+) entries", log))
        [by_rescuer] = re.findall(r"listener c stopped: batches=\d+ entries=(\d+)", log)
        assert claimed >= held
        # the killed one had done part of the work: the group shared it
        assert int(by_rescuer) < total - after_sigterm
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        await client.aclose()


@pytest.fixture(scope="module")
def own_servers() -> Iterator[tuple[DevStack, DevStack]]:
    """PostgreSQL and Redis of our own (durable settings), each restartable alone."""
    homes = [Path(tempfile.mkdtemp(prefix="aiops-faults-")) for _ in range(2)]
    postgres = DevStack(
        homes[0], postgres_port=free_port(), services=("postgres",), fast_unsafe=False
    )
    redis_stack = DevStack(homes[1], redis_port=free_port(), services=("redis",), fast_unsafe=False)
    try:
        state = asyncio.run(postgres.up()).state
        asyncio.run(redis_stack.up())
        asyncio.run(migrate(state.services["postgres"].url, TEST_EMBEDDING_DIM))
        yield postgres, redis_stack
    finally:
        postgres.down(timeout=10)
        redis_stack.down(timeout=10)
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


async def test_redis_and_postgres_restarts_lose_nothing(
    own_servers: tuple[DevStack, DevStack], stream_prefix: str, tmp_path: Path
) -> None:
    postgres, redis_stack = own_servers
    pg_state, redis_state = postgres.load(), redis_stack.load()
    assert pg_state is not None and redis_state is not None
    database_url = pg_state.services["postgres"].url
    redis_url = redis_state.services["redis"].url
    settings = mesh_settings(redis_url, database_url, stream_prefix)
    stream = f"{stream_prefix}:app"
    client = aioredis.Redis.from_url(redis_url)
    mesh = EventMesh(client)
    published: list[Event] = []
    stop = asyncio.Event()

    async def publisher() -> None:
        i = 0
        while not stop.is_set():
            batch = [
                Event(event_type="MetricReport", source="app", payload={"i": i + k})
                for k in range(50)
            ]
            i += 50
            published.extend(batch)  # counted before XADD: an attempt must not be lost either
            await mesh.publish_many(batch, stream=stream)
            await asyncio.sleep(0.02)

    listener = spawn_listener(settings, tmp_path / "listener.log", "--consumer", "l")
    task = asyncio.create_task(publisher())
    try:

        async def stored_at_least(n: int) -> bool:
            try:
                return (await _stored(database_url))[0] >= n
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return False

        await wait_for(lambda: stored_at_least(500), 30, "events before the Redis restart")
        await asyncio.to_thread(redis_stack.down, 10)
        await asyncio.sleep(1.0)
        await redis_stack.up()
        mark = len(published)
        await wait_for(lambda: stored_at_least(mark), 30, "events after the Redis restart")

        await asyncio.to_thread(postgres.down, 10)
        await asyncio.sleep(1.0)
        await postgres.up()
        mark = len(published) + 500
        await wait_for(lambda: stored_at_least(mark), 30, "events after the PostgreSQL restart")
        stop.set()
        await task
        await wait_for(lambda: stored_at_least(len(published)), 30, "every event")
        n, distinct = await _stored(database_url)
        assert n == distinct == len(published)
        assert await _stored_ids(database_url) == {e.id for e in published}

        async def all_acked() -> bool:
            return await pending(client, stream, settings.listener_group) == 0

        await wait_for(all_acked, 20, "every entry to be acknowledged")
        log = (tmp_path / "listener.log").read_text()
        # it did see both servers go away, and carried on
        assert "Connection closed by server" in log or "Error 111 connecting" in log
        assert "storing events failed" in log
        assert listener.poll() is None
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        if listener.poll() is None:
            listener.send_signal(signal.SIGTERM)
            try:
                listener.wait(timeout=20)
            except subprocess.TimeoutExpired:
                listener.kill()
        await client.aclose()
