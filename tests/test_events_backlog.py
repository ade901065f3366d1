"""After an outage: a stale backlog is stored and counted but never acted on, and no entry
a consumer group has not processed is ever trimmed from its stream."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from test_events_helpers import (
    drain,
    entries_of,
    incident_router,
    make_ingestor,
    mesh_settings,
    wait_for,
)

from aiops.events.consumer import Entry
from aiops.events.envelope import Event, EventType
from aiops.events.health import mesh_health_from_settings
from aiops.events.mesh import EventMesh
from aiops.events.routing import workflow_id_for
from aiops.events.store import EventQuery, EventStore
from aiops.events.trim import StreamTrimmer
from workers import listener


async def _has_incident(env: WorkflowEnvironment, workflow_id: str) -> bool:
    try:
        await env.client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        assert error.status == RPCStatusCode.NOT_FOUND
        return False
    return True


async def test_a_stale_backlog_is_stored_and_counted_never_acted_on(
    temporal_env: WorkflowEnvironment,
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    # a group of its own: the stale count is the group's, shared by its listeners
    settings = mesh_settings(
        redis_url,
        database_url,
        stream_prefix,
        events_stale_after_s=1.0,
        listener_group=f"g-{stream_prefix}",
    )
    stream = f"{stream_prefix}:app"
    service = f"checkout-{stream_prefix}"
    mesh = EventMesh(redis_client)

    def problem(text: str) -> Event:
        return Event(
            event_type=EventType.SERVICE_ERROR,
            source=service,
            service=service,
            payload={"message": text},
        )

    # published while no listener ran, read after they waited longer than stale_after_s
    old = [problem(f"disk full on {uuid.uuid4().hex}") for _ in range(3)]
    old += [Event(event_type="MetricReport", source=service, payload={"n": n}) for n in range(5)]
    await mesh.publish_many(old, stream=stream)
    await asyncio.sleep(1.5)
    router = incident_router(temporal_env.client, f"nobody-{stream_prefix}")
    ingestor = make_ingestor(settings, redis_client, store, incidents=router)
    await drain(ingestor)

    assert await store.count(EventQuery(sources=[service], limit=None)) == len(old)
    assert ingestor.stats.stale == len(old)
    assert (ingestor.stats.problems, router.stats.observations) == (0, 0)
    for observation in router.observe(old[:3]):
        assert not await _has_incident(temporal_env, workflow_id_for(observation))
    health = await mesh_health_from_settings(settings, redis_client, store)
    assert health.stale_total == len(old)

    # a live problem is acted on as ever
    live = problem(f"disk full on {uuid.uuid4().hex}")
    await mesh.publish(live, stream=stream)
    await drain(ingestor)
    assert (ingestor.stats.stale, ingestor.stats.problems) == (len(old), 1)
    [observation] = router.observe([live])
    workflow_id = workflow_id_for(observation)
    assert await _has_incident(temporal_env, workflow_id)
    await temporal_env.client.get_workflow_handle(workflow_id).terminate("test done")


async def test_no_unprocessed_entry_is_ever_trimmed(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    """More than MAXLEN entries published while the listener is away: all are still there
    when it comes back; once read, what its group acknowledged is trimmed, what it holds
    pending (a dead listener's, to be claimed) is not."""
    maxlen = 1000
    settings = mesh_settings(redis_url, database_url, stream_prefix, events_maxlen=maxlen)
    stream = f"{stream_prefix}:app"
    group = settings.listener_group
    await redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    # another reader of the stream (as the anomaly detector is): its group holds nothing
    # until a consumer of it reads
    await redis_client.xgroup_create(stream, "tool", id="0")
    mesh = EventMesh.from_settings(settings, redis_url)
    events = [Event(event_type="MetricReport", source="api", payload={"n": n}) for n in range(3000)]
    try:
        await mesh.publish_many(events, stream=stream)
    finally:
        await mesh.aclose()
    trimmer = StreamTrimmer(redis_client, maxlen, group)
    assert await redis_client.xlen(stream) == 3000
    assert await trimmer.trim(stream) == 0  # nothing read yet: nothing goes
    assert await redis_client.xlen(stream) == 3000

    # a listener reads 2000 and dies holding the second half of them, unacknowledged
    dead = make_ingestor(settings, redis_client, store, consumer="dead")
    await dead.consumer.discover(force=True)
    taken: list[Entry] = []
    while len(taken) < 2000:
        taken += await dead.consumer.read()
    await dead.process(taken[:1000])
    assert await trimmer.trim(stream) > 0
    left = [entry_id.decode() for entry_id, _ in await entries_of(redis_client, stream)]
    assert set(e.entry_id for e in taken[1000:]) <= set(left)  # pending: kept
    assert len(left) >= 2000

    survivor = make_ingestor(settings, redis_client, store, consumer="survivor")
    await asyncio.sleep(settings.listener_claim_idle_ms / 1000 + 0.1)
    await drain(survivor)
    assert await store.count(EventQuery(sources=["api"], limit=None)) == 3000
    assert dead.stats.vanished + survivor.stats.vanished == 0
    # all acknowledged by the listeners, but the tool in use has read one entry: kept
    await redis_client.xreadgroup("tool", "reader", {stream: "0"}, count=1)
    await redis_client.xreadgroup("tool", "reader", {stream: ">"}, count=1)
    before = int(await redis_client.xlen(stream))
    await trimmer.trim(stream)
    assert await redis_client.xlen(stream) == before
    # the tool abandoned (no consumer of it read for longer than allowed): it holds nothing
    await asyncio.sleep(0.05)
    abandoning = StreamTrimmer(redis_client, maxlen, group, abandoned_after_ms=1)
    assert await abandoning.trim(stream) > 0
    assert await redis_client.xlen(stream) < before


async def test_the_listener_trims_what_it_has_processed(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    store: EventStore,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix, events_maxlen=1000)
    stream = f"{stream_prefix}:app"
    events = [
        Event(event_type="MetricReport", source="trim", payload={"n": n}) for n in range(3000)
    ]
    await EventMesh(redis_client).publish_many(events, stream=stream)
    stop = asyncio.Event()
    running = asyncio.create_task(
        listener.run_listener(settings, consumer="trimmer", incidents=False, stop=stop)
    )
    try:

        async def trimmed() -> bool:
            stored = await store.count(EventQuery(sources=["trim"], limit=None))
            return stored == 3000 and int(await redis_client.xlen(stream)) < 3000

        await wait_for(trimmed, 60, "every event stored and the stream trimmed")
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
