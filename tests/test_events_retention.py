"""Retention of the event store, the only place raw (unmasked) payloads live: events older
than the retention go, in batches, from `aiops events prune` and the listener's hourly
prune; younger ones stay."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
from typer.testing import CliRunner

from aiops.events.envelope import Event
from aiops.events.store import EventStore
from workers import cli
from workers.listener import prune_periodically

cli._register()


async def _seed(pool: asyncpg.Pool, ages_days: list[float]) -> None:
    now = datetime.now(UTC)
    for age in ages_days:
        event = Event(
            event_type="ServiceError",
            source="billing",
            timestamp=now - timedelta(days=age),
            payload={"message": "card 4111 1111 1111 1111 declined for bob@example.com"},
        )
        await pool.execute(
            "INSERT INTO events (id, ts, event_type, source, payload)"
            " VALUES ($1, $2, $3, $4, $5::jsonb)",
            event.id,
            event.timestamp,
            event.event_type,
            event.source,
            json.dumps(event.payload),
        )


async def test_prune_removes_only_what_is_older_than_the_retention(database_url: str) -> None:
    store = await EventStore.connect(database_url)
    try:
        await _seed(store.pool, [45, 40, 31, 29, 1, 0])
        assert await store.prune(timedelta(days=30), batch=2) == 3  # several batches
        left = await store.pool.fetchval("SELECT count(*) FROM events")
        assert left == 3
        assert await store.prune(timedelta(days=30)) == 0
        task = asyncio.create_task(prune_periodically(store, 0.5, every_s=3600))
        for _ in range(50):
            if await store.pool.fetchval("SELECT count(*) FROM events") == 1:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        # half a day: the 29- and the 1-day-old went, today's stays
        assert await store.pool.fetchval("SELECT count(*) FROM events") == 1
    finally:
        await store.close()


def test_the_prune_command(cli_db: str) -> None:
    async def seed() -> None:
        pool = await asyncpg.create_pool(cli_db, min_size=1, max_size=1)
        try:
            await _seed(pool, [10, 2])
        finally:
            await pool.close()

    asyncio.run(seed())
    done = CliRunner().invoke(cli.app, ["events", "prune", "--older-than", "5d"])
    assert done.exit_code == 0, done.output
    assert "pruned 1 event(s)" in done.output
