"""kill -9 of PostgreSQL while a real listener stores a steady flow of events: after the
restart every event is stored, once (counted by event id)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import psutil
import pytest_asyncio
import redis.asyncio as aioredis
from test_events_helpers import mesh_settings, pending, spawn_listener, wait_for

from aiops.db.migrate import migrate
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh

TEST_EMBEDDING_DIM = 384


@pytest_asyncio.fixture
async def own_postgres() -> AsyncIterator[DevStack]:
    """A PostgreSQL of our own with its durable settings (a kill -9 must lose no commit)."""
    home = Path(tempfile.mkdtemp(prefix="aiops-pgkill-"))
    stack = DevStack(home, postgres_port=free_port(), services=("postgres",))
    try:
        state = (await stack.up()).state
        await migrate(state.services["postgres"].url, TEST_EMBEDDING_DIM)
        yield stack
    finally:
        await asyncio.to_thread(stack.down, 10)
        shutil.rmtree(home, ignore_errors=True)


def _kill_9_postgres(stack: DevStack) -> None:
    """SIGKILL the postmaster, then wait for its backends to notice and leave (a restart
    refuses to start while they hold its shared memory)."""
    state = stack.load()
    assert state is not None
    pid = state.services["postgres"].process.pid
    backends = psutil.Process(pid).children()
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid), *backends], timeout=20)


async def test_kill_9_of_postgres_under_load_loses_and_doubles_nothing(
    own_postgres: DevStack,
    redis_url: str,
    stream_prefix: str,
    tmp_path: Path,
    fault_table: object,
) -> None:
    state = own_postgres.load()
    assert state is not None
    database_url = state.services["postgres"].url
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

    async def stored() -> tuple[int, int]:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow("SELECT count(*) AS n, count(DISTINCT id) AS d FROM events")
            assert row is not None
            return int(row["n"]), int(row["d"])
        finally:
            await conn.close()

    async def stored_at_least(n: int) -> bool:
        try:
            return (await stored())[0] >= n
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    listener = spawn_listener(settings, tmp_path / "listener.log", "--consumer", "l")
    task = asyncio.create_task(publisher())
    try:
        await wait_for(lambda: stored_at_least(1000), 60, "events before the kill")
        await asyncio.to_thread(_kill_9_postgres, own_postgres)
        at_kill = len(published)
        await asyncio.sleep(1.0)  # events keep coming while PostgreSQL is away
        await own_postgres.up()
        await wait_for(lambda: stored_at_least(at_kill + 500), 60, "events after the restart")
        stop.set()
        await task
        await wait_for(lambda: stored_at_least(len(published)), 60, "every event")
        n, distinct = await stored()
        conn = await asyncpg.connect(database_url)
        try:
            ids = {r["id"] for r in await conn.fetch("SELECT id FROM events")}
        finally:
            await conn.close()

        async def all_acked() -> bool:
            return await pending(client, stream, settings.listener_group) == 0

        await wait_for(all_acked, 30, "every entry to be acknowledged")
        alive = listener.poll() is None
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
    sent = {e.id for e in published}
    fault_table.record(  # type: ignore[attr-defined]
        fault="postgres kill -9 under load",
        unit="events",
        sent=len(published),
        lost=len(sent - ids),
        duplicated=n - distinct,
        note=f"killed after {at_kill} published",
    )
    assert sent - ids == set() and n == distinct == len(published)
    assert alive, "the listener died with PostgreSQL"
    # it did see PostgreSQL go away, and carried on
    assert "storing events failed" in (tmp_path / "listener.log").read_text()
