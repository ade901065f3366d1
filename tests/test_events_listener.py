"""The listener pipeline against real Redis and PostgreSQL: stored once, dead letters with
their reasons, acknowledged only when done, groups shared, health figures."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
import pytest
import redis.asyncio as aioredis
from test_events_helpers import (
    drain,
    entries_of,
    make_ingestor,
    mesh_settings,
    pending,
    wait_for,
)

from aiops.events.envelope import Event, EventType
from aiops.events.health import mesh_health_from_settings
from aiops.events.mesh import EventMesh, PublishError
from aiops.events.routing import EventFilter, PayloadPredicate, Subscription
from aiops.events.store import EventStore


async def _rows(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch("SELECT * FROM events ORDER BY ts")
    finally:
        await conn.close()


async def test_valid_events_stored_once_and_acknowledged(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix)
    mesh = EventMesh(redis_client, dead_letter_stream=settings.dead_letter_stream)
    stream = f"{stream_prefix}:app"
    corr = uuid.uuid4()
    events = [
        Event(
            event_type=EventType.METRIC_REPORT,
            source="api",
            payload={"n": i, "latency_ms": 12.5},
            correlation_id=corr,
            service="api",
            severity="info",
        )
        for i in range(1200)
    ]
    entry_ids = await mesh.publish_many(events, stream=stream)
    assert len(entry_ids) == 1200
    ingestor = make_ingestor(settings, redis_client, store)
    await drain(ingestor)

    rows = await _rows(database_url)
    assert len(rows) == 1200
    by_id = {r["id"]: r for r in rows}
    first = by_id[events[0].id]
    assert first["stream"] == stream and first["stream_entry_id"] == entry_ids[0]
    assert json.loads(first["payload"]) == {"n": 0, "latency_ms": 12.5}
    assert first["correlation_id"] == corr and first["severity"] == "info"
    assert first["ts"] == events[0].timestamp
    assert await pending(redis_client, stream, settings.listener_group) == 0
    assert ingestor.stats.stored == 1200

    # the same entries delivered again (a crash before XACK) change nothing
    await redis_client.xgroup_setid(stream, settings.listener_group, "0")
    await drain(ingestor)
    assert len(await _rows(database_url)) == 1200
    assert ingestor.stats.stored == 1200 and ingestor.stats.dead_lettered == 0


async def test_invalid_entries_go_to_dead_letters_and_the_stream_moves_on(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix, events_max_payload_bytes=2048)
    stream = f"{stream_prefix}:app"
    good = Event(event_type="ServiceError", source="api", payload={"message": "boom"})
    conflicting = good.model_copy(update={"payload": {"message": "other"}})
    bad: list[tuple[dict[str, bytes], str]] = [
        ({"event": b"{not json"}, "Invalid JSON"),
        ({"event": b'{"source": "x"}'}, "event_type: Field required"),
        ({"event": b'{"event_type": "A", "source": 7}'}, "source: Input should be a valid string"),
        ({"event": b"\xc3\x28 bytes"}, "not UTF-8"),
        ({"data": b"hello", "more": b"\xff"}, "no 'event' field"),
        (
            {
                "event": json.dumps(
                    {"event_type": "A", "source": "s", "payload": {"x": "y" * 3000}}
                ).encode()
            },
            "over the limit of 2048",
        ),
        ({"event": b'{"event_type":"A","source":"s","payload":{"v":Infinity}}'}, "NaN or Infinity"),
    ]
    await redis_client.xadd(stream, {"event": good.to_wire()})
    bad_ids = [cast(bytes, await redis_client.xadd(stream, fields)) for fields, _ in bad]  # type: ignore[arg-type]
    repeat_id = cast(bytes, await redis_client.xadd(stream, {"event": good.to_wire()}))
    conflict_id = cast(bytes, await redis_client.xadd(stream, {"event": conflicting.to_wire()}))
    after = Event(event_type="BookmarkCreated", source="b")
    await redis_client.xadd(stream, {"event": after.to_wire()})

    ingestor = make_ingestor(settings, redis_client, store)
    await drain(ingestor)

    stored = {r["id"] for r in await _rows(database_url)}
    assert stored == {good.id, after.id}
    dead = await entries_of(redis_client, settings.dead_letter_stream)
    assert len(dead) == len(bad) + 1
    by_source = {f[b"dead:entry_id"]: f for _, f in dead}
    for (fields, reason), entry_id in zip(bad, bad_ids, strict=True):
        letter = by_source[entry_id]
        assert reason in letter[b"dead:reason"].decode(), letter[b"dead:reason"]
        assert letter[b"dead:stream"] == stream.encode()
        for name, value in fields.items():
            assert letter[name.encode()] == value  # original bytes, untouched
    letter = by_source[conflict_id]
    assert b"duplicate event id with different content" in letter[b"dead:reason"]
    assert repeat_id not in by_source  # the same event twice is stored once, silently
    assert await pending(redis_client, stream, settings.listener_group) == 0


async def test_same_id_twice_in_one_batch(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix)
    stream = f"{stream_prefix}:app"
    event = Event(event_type="A", source="s", payload={"k": 1})
    await redis_client.xadd(stream, {"event": event.to_wire()})
    await redis_client.xadd(stream, {"event": event.to_wire()})
    await redis_client.xadd(stream, {"event": event.model_copy(update={"source": "t"}).to_wire()})
    ingestor = make_ingestor(settings, redis_client, store)
    await drain(ingestor)
    assert [r["source"] for r in await _rows(database_url)] == ["s"]
    dead = await entries_of(redis_client, settings.dead_letter_stream)
    assert len(dead) == 1 and b"came earlier in this batch" in dead[0][1][b"dead:reason"]
    assert ingestor.stats.repeats == 1


async def test_dead_letter_keeps_colliding_field_names(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix)
    stream = f"{stream_prefix}:app"
    await redis_client.xadd(stream, {"dead:reason": b"mine", "event": b"[]"})
    await drain(make_ingestor(settings, redis_client, store))
    [(_, letter)] = await entries_of(redis_client, settings.dead_letter_stream)
    assert letter[b"orig:dead:reason"] == b"mine"
    assert b"Input should be an object" in letter[b"dead:reason"]


async def test_consumers_share_one_group(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix, listener_batch_size=50)
    mesh = EventMesh(redis_client)
    events = [Event(event_type="A", source=f"src{i % 3}") for i in range(600)]
    for i, event in enumerate(events):
        await mesh.publish(event, stream=f"{stream_prefix}:s{i % 3}")
    a = make_ingestor(settings, redis_client, store, consumer="a")
    b = make_ingestor(settings, redis_client, store, consumer="b")
    await asyncio.gather(drain(a), drain(b))
    assert a.stats.entries > 0 and b.stats.entries > 0
    assert a.stats.entries + b.stats.entries == 600
    assert len(await _rows(database_url)) == 600


async def test_claims_entries_of_a_dead_consumer(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix, listener_claim_idle_ms=200)
    stream = f"{stream_prefix}:app"
    events = [Event(event_type="A", source="s", payload={"i": i}) for i in range(30)]
    await EventMesh(redis_client).publish_many(events, stream=stream)
    dead = make_ingestor(settings, redis_client, store, consumer="dead")
    await dead.consumer.discover(force=True)
    taken = await dead.consumer.read()  # read, never processed: the consumer "died"
    assert len(taken) == 30
    survivor = make_ingestor(settings, redis_client, store, consumer="survivor")
    await drain(survivor)
    assert survivor.stats.entries == 0  # nothing new, and the dead one's are not idle yet
    await asyncio.sleep(0.3)
    survivor.consumer._claimed_at = -1e9
    await drain(survivor)
    assert survivor.consumer.stats.claimed == 30
    assert {r["id"] for r in await _rows(database_url)} == {e.id for e in events}
    assert await pending(redis_client, stream, settings.listener_group) == 0


async def test_publish_refusals(redis_client: aioredis.Redis, stream_prefix: str) -> None:
    mesh = EventMesh(redis_client, max_event_bytes=1024, dead_letter_stream=f"{stream_prefix}:dead")
    with pytest.raises(PublishError, match="over the limit of 1024"):
        await mesh.publish(Event(event_type="A", source="s", payload={"x": "y" * 2000}))
    with pytest.raises(PublishError, match="dead-letter stream"):
        await mesh.publish(Event(event_type="A", source="s"), stream=f"{stream_prefix}:dead")
    with pytest.raises(PublishError, match="domain"):
        await mesh.publish(Event(event_type="A", source="has space"))
    entry = await mesh.publish(Event(event_type="A", source="s"), stream=f"{stream_prefix}:x")
    assert (await entries_of(redis_client, f"{stream_prefix}:x"))[0][0].decode() == entry


async def test_subscriptions_see_only_their_events(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix)
    seen: list[Event] = []
    broken_calls = 0

    async def agent(events: Sequence[Event]) -> None:
        seen.extend(events)

    async def broken(events: Sequence[Event]) -> None:
        nonlocal broken_calls
        broken_calls += 1
        raise RuntimeError("agent bug")

    subs = [
        Subscription(
            "imports",
            EventFilter(
                event_types=["ImportFailed"],
                sources=["import-*"],
                payload=[PayloadPredicate(path="file.size_mb", op="gt", value=100)],
            ),
            agent,
        ),
        Subscription("broken", EventFilter(), broken),
    ]
    wanted = Event(event_type="ImportFailed", source="import-1", payload={"file": {"size_mb": 500}})
    events = [
        wanted,
        Event(event_type="ImportFailed", source="import-2", payload={"file": {"size_mb": 5}}),
        Event(event_type="ImportFailed", source="export-1", payload={"file": {"size_mb": 500}}),
        Event(event_type="ServiceError", source="import-1", payload={"file": {"size_mb": 500}}),
        Event(event_type="ImportFailed", source="import-3", payload={"file": "big"}),
    ]
    await EventMesh(redis_client).publish_many(events, stream=f"{stream_prefix}:app")
    ingestor = make_ingestor(settings, redis_client, store, subscriptions=subs)
    await drain(ingestor)
    assert seen == [wanted]
    assert broken_calls == 1 and subs[1].failures == 1
    assert len(await _rows(database_url)) == 5  # a failing agent holds nothing up


async def test_health_figures(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix, listener_batch_size=10)
    stream = f"{stream_prefix}:app"
    mesh = EventMesh(redis_client)
    await mesh.publish_many([Event(event_type="A", source="s") for _ in range(25)], stream=stream)
    await redis_client.xadd(stream, {"event": b"nope"})
    ingestor = make_ingestor(settings, redis_client, store)
    await ingestor.consumer.discover(force=True)
    health = await mesh_health_from_settings(settings, redis_client, store)
    assert health.status == "healthy"
    assert health.lag == 26 and health.pending == 0 and health.dead_letters == 0
    assert health.processed_1h == 0
    entries = await ingestor.consumer.read()  # read 10, not processed yet: pending
    health = await mesh_health_from_settings(settings, redis_client, store)
    assert health.pending == 10 and health.lag == 16
    [s] = health.streams
    assert s.stream == stream and s.length == 26 and s.consumers == 1
    await ingestor.process(entries)
    await drain(ingestor)
    health = await mesh_health_from_settings(settings, redis_client, store)
    assert (health.pending, health.lag, health.dead_letters) == (0, 0, 1)
    assert health.processed_1h == 25
    # an old undelivered entry makes the mesh degraded
    old = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp() * 1000)
    await redis_client.xadd(f"{stream_prefix}:old", {"event": b"{}"}, id=f"{old}-0")
    await ingestor.consumer.discover(force=True)
    health = await mesh_health_from_settings(settings, redis_client, store)
    assert health.status == "degraded" and health.lag_seconds > 250


async def test_health_reports_a_server_away(
    redis_url: str, database_url: str, stream_prefix: str, store: EventStore
) -> None:
    settings = mesh_settings("redis://127.0.0.1:1/0", database_url, stream_prefix)
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        health = await mesh_health_from_settings(settings, client, store)
    finally:
        await client.aclose()
    assert health.status == "unhealthy" and health.errors[0].startswith("redis:")
    assert health.processed_1h == 0


async def test_restart_under_the_same_name_takes_its_own_pending_first(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    # claims would only come after an hour: what gets these entries is the own-pending read
    settings = mesh_settings(
        redis_url, database_url, stream_prefix, listener_claim_idle_ms=3_600_000
    )
    stream = f"{stream_prefix}:app"
    events = [Event(event_type="A", source="s", payload={"i": i}) for i in range(40)]
    await EventMesh(redis_client).publish_many(events, stream=stream)
    before = make_ingestor(settings, redis_client, store, consumer="same")
    await before.consumer.discover(force=True)
    assert len(await before.consumer.read()) == 40  # then the process "crashed"

    again = make_ingestor(settings, redis_client, store, consumer="same")
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))

    async def stored_all() -> bool:
        return len(await _rows(database_url)) == 40

    await wait_for(stored_all, 10, "the restarted consumer to store its pending entries")
    stop.set()
    stats = await asyncio.wait_for(task, 10)
    assert stats.stored == 40 and again.consumer.stats.claimed == 0
    assert await pending(redis_client, stream, settings.listener_group) == 0


async def test_run_stops_after_finishing_what_it_holds(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix, listener_batch_size=100)
    stream = f"{stream_prefix}:app"
    ingestor = make_ingestor(settings, redis_client, store)
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    mesh = EventMesh(redis_client)
    published = 0
    for _ in range(20):
        await mesh.publish_many(
            [Event(event_type="A", source="s") for _ in range(100)], stream=stream
        )
        published += 100
        await asyncio.sleep(0.01)
    stop.set()
    stats = await asyncio.wait_for(task, 10)
    # whatever it read, it stored and acknowledged; the rest waits in the stream
    assert stats.entries == stats.stored == len(await _rows(database_url)) > 0
    assert await pending(redis_client, stream, settings.listener_group) == 0
    await drain(ingestor)
    assert len(await _rows(database_url)) == published


async def test_a_row_postgresql_refuses_is_found_and_dead_lettered_alone(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    # 1e400 parses as a float infinity, which jsonb refuses: validation lets it through,
    # PostgreSQL's refusal of the batch is narrowed down to this one event
    settings = mesh_settings(redis_url, database_url, stream_prefix)
    stream = f"{stream_prefix}:app"
    good = [Event(event_type="A", source="s", payload={"i": i}) for i in range(40)]
    await EventMesh(redis_client).publish_many(good[:25], stream=stream)
    bad_id = cast(
        bytes,
        await redis_client.xadd(
            stream, {"event": b'{"event_type":"A","source":"s","payload":{"x":1e400}}'}
        ),
    )
    await EventMesh(redis_client).publish_many(good[25:], stream=stream)
    ingestor = make_ingestor(settings, redis_client, store)
    await drain(ingestor)
    assert {r["id"] for r in await _rows(database_url)} == {e.id for e in good}
    [(_, letter)] = await entries_of(redis_client, settings.dead_letter_stream)
    assert letter[b"dead:entry_id"] == bad_id
    assert letter[b"dead:reason"].startswith(b"refused by PostgreSQL")
    assert await pending(redis_client, stream, settings.listener_group) == 0
