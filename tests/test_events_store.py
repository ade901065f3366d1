"""The event store's queries, the causation tree, and replay back through the listener."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from aiops_worker import aiops_worker
from temporalio.testing import WorkflowEnvironment
from test_events_helpers import (
    drain,
    entries_of,
    incident_router,
    make_ingestor,
    mesh_settings,
)

from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.events.replay import replay
from aiops.events.store import EventQuery, EventStore, Located
from aiops.models.incident import IncidentStatus
from workflows.incident import IncidentWorkflow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float, **kw: object) -> Event:
    return Event(timestamp=T0 + timedelta(minutes=minutes), **kw)


async def test_queries_by_time_type_source_and_correlation(store: EventStore) -> None:
    flow = uuid.uuid4()
    events = [
        at(0, event_type="ServiceError", source="api", correlation_id=flow),
        at(1, event_type="MetricReport", source="api"),
        at(2, event_type="ServiceError", source="db", correlation_id=flow),
        at(3, event_type="BookmarkCreated", source="bookmarks"),
        at(60, event_type="ServiceError", source="api"),
    ]
    result = await store.store([Located(e, "events:x", f"{i}-0") for i, e in enumerate(events)])
    assert result.stored == 5

    async def ids(**kw: object) -> list[uuid.UUID]:
        return [s.event.id for s in await store.query(EventQuery(**kw))]

    assert await ids() == [e.id for e in events]
    assert await ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == [
        events[1].id,
        events[2].id,
    ]
    assert await ids(event_types=["ServiceError"]) == [events[0].id, events[2].id, events[4].id]
    assert await ids(sources=["api"], event_types=["ServiceError"]) == [events[0].id, events[4].id]
    assert await ids(correlation_id=flow) == [events[0].id, events[2].id]
    assert await ids(limit=2) == [events[0].id, events[1].id]
    assert await store.count(EventQuery(event_types=["ServiceError"])) == 3
    got = await store.get(events[3].id)
    assert got is not None and got.event == events[3]
    assert got.stream == "events:x" and got.stream_entry_id == "3-0"
    assert await store.get(uuid.uuid4()) is None


async def test_store_is_idempotent_and_tells_repeats_from_conflicts(store: EventStore) -> None:
    event = at(0, event_type="A", source="s", payload={"k": [1, 2]})
    assert (await store.store([Located(event, "events:x", "1-0")])).stored == 1
    redelivered = await store.store([Located(event, "events:x", "1-0")])
    assert (redelivered.stored, redelivered.repeats, redelivered.conflicts) == (0, [], [])
    repeat = await store.store([Located(event, "events:x", "2-0")])
    assert (repeat.stored, repeat.repeats, repeat.conflicts) == (0, [0], [])
    other = event.model_copy(update={"payload": {"k": [2, 1]}})
    fresh = at(1, event_type="A", source="s")
    mixed = await store.store(
        [Located(fresh, "events:x", "3-0"), Located(other, "events:y", "9-0")]
    )
    assert mixed.stored == 1 and mixed.repeats == []
    [(index, reason)] = mixed.conflicts
    assert index == 1 and "already stored from events:x entry 1-0" in reason


async def test_causation_tree(store: EventStore) -> None:
    root = at(0, event_type="ServiceTimeout", source="import")
    detected = at(1, event_type="Anomaly", source="monitor", causation_id=root.id)
    action = at(2, event_type="AgentAction", source="healer", causation_id=detected.id)
    done = at(3, event_type="ActionCompleted", source="healer", causation_id=action.id)
    side = at(2.5, event_type="MetricReport", source="monitor", causation_id=detected.id)
    unrelated = at(1, event_type="MetricReport", source="x")
    await store.store([Located(e) for e in (root, detected, action, done, side, unrelated)])

    tree = await store.causation_tree(done.id)  # from any member, the whole tree
    assert tree is not None and tree.event.event.id == root.id
    assert tree.size() == 5
    [child] = tree.children
    assert child.event.event.id == detected.id
    assert [c.event.event.id for c in child.children] == [action.id, side.id]
    assert child.children[0].children[0].event.event.id == done.id
    below = await store.causation_tree(detected.id, from_root=False)
    assert below is not None and below.size() == 4
    assert await store.causation_tree(uuid.uuid4()) is None


async def test_causation_cycle_is_cut(store: EventStore) -> None:
    a_id, b_id = uuid.uuid4(), uuid.uuid4()
    a = at(0, id=a_id, event_type="A", source="s", causation_id=b_id)
    b = at(1, id=b_id, event_type="B", source="s", causation_id=a_id)
    await store.store([Located(a), Located(b)])
    tree = await store.causation_tree(a_id)
    assert tree is not None and tree.size() == 2


async def test_replay_goes_back_through_the_listener_to_replay_incidents(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    store: EventStore,
    temporal_env: WorkflowEnvironment,
) -> None:
    settings = mesh_settings(redis_url, database_url, stream_prefix)
    client = aioredis.Redis.from_url(redis_url)
    queue = f"replay-{uuid.uuid4().hex[:8]}"
    message = f"disk full on /var/{uuid.uuid4().hex}"
    history = [
        at(i, event_type="ServiceError", source="api", payload={"message": message})
        for i in range(5)
    ] + [
        at(10, event_type="MetricReport", source="api"),
        at(500, event_type="ServiceError", source="late"),
    ]
    await store.store([Located(e, "events:old", f"{i}-0") for i, e in enumerate(history)])
    try:
        report = await replay(
            store,
            EventMesh(client),
            since=T0,
            until=T0 + timedelta(hours=1),
            to_stream=f"{stream_prefix}:replay",
        )
        assert report.published == 6 and report.first == history[0].timestamp
        entries = await entries_of(client, f"{stream_prefix}:replay")
        assert all(b'"replay":true' in fields[b"event"] for _, fields in entries)

        async with aiops_worker(temporal_env.client, queue, database_url, redis_url):
            router = incident_router(temporal_env.client, queue, cool_down_s=600)
            ingestor = make_ingestor(settings, client, store, incidents=router)
            await drain(ingestor)
            assert ingestor.stats.stored == 0  # already in the store: not stored twice
            assert await store.count(EventQuery()) == 7
            [observation] = router.observe(history[:1])
            handle = temporal_env.client.get_workflow_handle(
                f"incident-replay-{observation.fingerprint}"
            )
            status = await handle.query(IncidentWorkflow.status)
            assert isinstance(status, IncidentStatus)
            assert status.replay and status.events == 5
            await handle.terminate("test done")
    finally:
        await client.aclose()
