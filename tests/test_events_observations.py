"""What an observe signal carries (bounded: counters, the newest ids, a cut sample), and the
routing decisions that must not live in one listener's memory."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from pydantic_core import to_json
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from test_events_helpers import fingerprinter_for_tests

from aiops.events.detection import DefaultDetector
from aiops.events.envelope import MONITOR_SOURCE, Event, EventType
from aiops.events.routing import IncidentRouter, coalesce, merge, workflow_id_for
from aiops.models.incident import OBSERVED_EVENT_IDS, SAMPLE_PAYLOAD_BYTES, Observation


def _storm(count: int, payload_bytes: int) -> list[Event]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Event(
            event_type=EventType.SERVICE_ERROR,
            source="api",
            timestamp=start + timedelta(milliseconds=n),
            payload={
                "message": "query failed for alice@example.com: deadlock detected",
                "dump": "x" * payload_bytes,
            },
        )
        for n in range(count)
    ]


def test_an_observation_is_bounded_however_big_the_storm() -> None:
    events = _storm(500, 200_000)
    shuffled = events[250:] + events[:250]  # out of order within the batch
    [observation] = coalesce(shuffled, DefaultDetector(), fingerprinter_for_tests())
    assert observation.count == 500
    assert observation.event_ids == [e.id for e in events[-OBSERVED_EVENT_IDS:]]
    sample = observation.sample
    assert sample.id == events[-1].id
    assert len(to_json(sample.payload)) <= SAMPLE_PAYLOAD_BYTES
    assert sample.payload["truncated"] is True and sample.payload["payload_bytes"] > 200_000
    # the text that says what the problem is stays, masked
    assert "deadlock detected" in sample.payload["message"]
    assert "alice@example.com" not in to_json(observation).decode()
    # a small payload is kept whole (masked)
    [small] = coalesce(_storm(3, 10), DefaultDetector(), fingerprinter_for_tests())
    assert small.sample.payload["dump"] == "x" * 10


def test_merged_observations_add_up_and_stay_bounded() -> None:
    events = _storm(40, 10)
    detector, fingerprinter = DefaultDetector(), fingerprinter_for_tests()
    [first] = coalesce(events[:30], detector, fingerprinter)
    [second] = coalesce(events[30:], detector, fingerprinter)
    both = merge(second, first)
    assert both.count == 40
    assert (both.first_seen, both.last_seen) == (events[0].timestamp, events[-1].timestamp)
    assert both.sample.id == events[-1].id
    assert both.event_ids == [e.id for e in events[-OBSERVED_EVENT_IDS:]]


def test_an_observation_from_before_event_ids_still_reads() -> None:
    """Histories recorded before the field replay: it is optional."""
    [observation] = coalesce(_storm(1, 10), DefaultDetector(), fingerprinter_for_tests())
    old = observation.model_dump(mode="json", exclude={"event_ids"})
    assert Observation.model_validate(old).event_ids == []


async def test_a_restarted_listener_joins_the_probe_to_the_incident_it_opened(
    temporal_env: WorkflowEnvironment, redis_url: str, stream_prefix: str
) -> None:
    """The service's own problem is routed by one listener, its health probe's failure by
    another (or the same one restarted): one incident. No worker runs: where each
    observation goes is the point."""
    service = f"bookmark-{stream_prefix}"
    own = Event(
        event_type=EventType.SERVICE_ERROR,
        source=service,
        service=service,
        payload={"message": "request failed: database pool exhausted"},
    )
    probe = Event(
        event_type=EventType.SERVICE_UNHEALTHY,
        source=MONITOR_SOURCE,
        service=service,
        payload={"message": f"service {service} is unhealthy: its health check fails"},
    )
    client = aioredis.Redis.from_url(redis_url)

    def listener() -> IncidentRouter:
        return IncidentRouter(
            temporal_env.client,
            task_queue=f"nobody-{stream_prefix}",
            detector=DefaultDetector(),
            fingerprinter=fingerprinter_for_tests(),
            correlate_s=120.0,
            redis=client,
            namespace=stream_prefix,
        )

    try:
        first = listener()
        [own_obs] = first.observe([own])
        await first.signal_all([own_obs])
        restarted = listener()
        [probe_obs] = restarted.observe([probe])
        await restarted.signal_all([probe_obs])
        assert restarted.stats.correlated == 1
        with pytest.raises(RPCError):
            await temporal_env.client.get_workflow_handle(workflow_id_for(probe_obs)).describe()
        history = await temporal_env.client.get_workflow_handle(
            workflow_id_for(own_obs)
        ).fetch_history()
        signals = [
            e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
        ]
        assert len(signals) == 2

        # both at once, from two listeners: the probe waits for the incident being started
        service2 = f"{service}-2"
        own2 = own.model_copy(update={"id": uuid.uuid4(), "service": service2})
        probe2 = probe.model_copy(update={"id": uuid.uuid4(), "service": service2})
        a, b = listener(), listener()
        [own2_obs], [probe2_obs] = a.observe([own2]), b.observe([probe2])
        await a.correlation.remember({service2: workflow_id_for(own2_obs)})
        await asyncio.gather(b.signal_all([probe2_obs]), a.signal_all([own2_obs]))
        assert b.stats.correlated == 1
        for observation in (own_obs, own2_obs):
            await temporal_env.client.get_workflow_handle(workflow_id_for(observation)).terminate(
                "test done"
            )
    finally:
        await client.aclose()
