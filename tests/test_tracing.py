"""One trace follows an event: the publisher's span, the listener's routing, the incident and
its child workflows, down to the activities that act. Real Redis, PostgreSQL and Temporal."""

from __future__ import annotations

import uuid
from typing import Protocol, cast

import redis.asyncio as aioredis
from aiops_worker import aiops_worker
from known_problems import seed_import_timeout
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin, create_tracer_provider
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from test_events_helpers import drain, make_ingestor, mesh_settings

from aiops.events.detection import DefaultDetector
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.events.routing import IncidentRouter
from aiops.events.store import EventStore
from aiops.models.incident import IncidentStatus
from aiops.trace_context import context_from, current_traceparent
from workers.listener import default_fingerprinter


class _Processing(Protocol):
    def add_span_processor(self, span_processor: SpanProcessor) -> None: ...


def _capture() -> InMemorySpanExporter:
    """Spans of this process into memory; the global provider can be set once per process,
    so join one another test installed rather than replace it."""
    provider = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        provider = create_tracer_provider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    processing = cast(_Processing, provider)
    processing.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def test_traceparent_round_trip_and_garbage() -> None:
    _capture()
    assert current_traceparent() is None  # no span: nothing to carry
    with trace.get_tracer(__name__).start_as_current_span("outer") as span:
        carried = current_traceparent()
    assert carried is not None
    context = context_from(carried)
    assert context is not None
    restored = trace.get_current_span(context).get_span_context()
    assert restored.trace_id == span.get_span_context().trace_id
    assert context_from("not-a-traceparent") is None
    assert context_from(None) is None


async def test_one_trace_from_publish_to_activities(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    stream_prefix: str,
) -> None:
    exporter = _capture()
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=pydantic_data_converter,
        plugins=[OpenTelemetryPlugin(add_temporal_spans=True)],
    )
    queue = f"q-{uuid.uuid4().hex[:8]}"
    settings = mesh_settings(redis_url, database_url, stream_prefix)
    redis = aioredis.Redis.from_url(redis_url)
    store = await EventStore.connect(database_url)
    router = IncidentRouter(
        client,
        task_queue=queue,
        detector=DefaultDetector(),
        fingerprinter=default_fingerprinter(),
        cool_down_s=0.5,
        with_search_attributes=False,
    )
    try:
        async with aiops_worker(client, queue, database_url, redis_url) as kg:
            await seed_import_timeout(kg)
            event = Event(
                event_type="ServiceTimeout",
                source="import-service",
                payload={"message": "bookmark import timed out after 30s on a large file"},
            )
            with trace.get_tracer(__name__).start_as_current_span("service publishes") as root:
                await EventMesh(redis).publish(event, stream=f"{stream_prefix}:events")
            await drain(make_ingestor(settings, redis, store, incidents=router))
            [observation] = router.observe([event])
            status = await client.get_workflow_handle(
                f"incident-{observation.fingerprint}", result_type=IncidentStatus
            ).result()
    finally:
        await store.close()
        await redis.aclose()

    assert status.outcome == "healed"
    trace_id = root.get_span_context().trace_id
    spans: list[ReadableSpan] = list(exporter.get_finished_spans())
    mine = [s for s in spans if s.context is not None and s.context.trace_id == trace_id]
    names = {s.name for s in mine}
    # the listener continued the publisher's trace ...
    assert "route incident" in names
    # ... into the incident, its children, and the activities that record, search and act
    for expected in (
        "RunWorkflow:IncidentWorkflow",
        "RunWorkflow:DiagnosisWorkflow",
        "RunWorkflow:HealingWorkflow",
        "RunWorkflow:LearningWorkflow",
        "RunActivity:record_problem",
        "RunActivity:execute_action",
        "RunActivity:probe_service_health",
    ):
        assert expected in names, f"{expected} not in the trace: {sorted(names)}"
