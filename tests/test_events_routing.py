"""Detection, filters, and problem events to IncidentWorkflow on the real Temporal server:
a storm of identical errors is one incident with a counter."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiops_worker import aiops_worker
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from test_events_helpers import (
    drain,
    fingerprinter_for_tests,
    incident_router,
    make_ingestor,
    mesh_settings,
)

from aiops import search_attributes
from aiops.devstack import binaries
from aiops.events.detection import DefaultDetector
from aiops.events.envelope import MONITOR_SOURCE, Event, EventType
from aiops.events.mesh import EventMesh
from aiops.events.routing import (
    EventFilter,
    IncidentRouter,
    PayloadPredicate,
    coalesce,
    workflow_id_for,
)
from aiops.events.store import EventStore
from aiops.models.incident import (
    IncidentInput,
    IncidentStatus,
    ProblemCategory,
    ProblemSeverity,
)
from workflows.incident import IncidentWorkflow


@pytest_asyncio.fixture
async def worker(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> AsyncIterator[str]:
    queue = f"incidents-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(temporal_env.client, queue, database_url, redis_url):
        yield queue


def test_default_detection_rules() -> None:
    detector = DefaultDetector()

    def classify(**kw: object) -> tuple[str, str, str] | None:
        d = detector.classify(Event(**{"source": "svc", **kw}))
        return None if d is None else (d.category.value, d.severity.value, d.text)

    assert classify(event_type="ServiceTimeout", payload={"duration_s": 30}) == (
        "timeout",
        "medium",
        "ServiceTimeout",
    )
    assert classify(event_type="ServiceError", payload={"message": "db down"}) == (
        "error",
        "high",
        "db down",
    )
    assert classify(event_type="ServiceUnhealthy", severity="critical") == (
        "unhealthy",
        "critical",
        "ServiceUnhealthy",
    )
    assert classify(event_type="Anomaly", payload={"error": "", "reason": "p99 x3"}) == (
        "anomaly",
        "medium",
        "p99 x3",
    )
    assert classify(event_type="PaymentFailed", severity="warning")[:2] == ("error", "medium")  # type: ignore[index]
    assert classify(event_type="cache.Timeout") is not None
    assert classify(event_type="MetricReport", severity="error")[0] == "error"  # type: ignore[index]
    for informational in ("MetricReport", "ServiceRecovered", "BookmarkCreated", "Cooldown"):
        assert classify(event_type=informational) is None
    for internal in ("ActionFailed", "AgentAction", "OutcomeRecorded", "ActionCompleted"):
        assert classify(event_type=internal, severity="critical") is None


def test_filters() -> None:
    event = Event(
        event_type="ImportFailed",
        source="import-7",
        service="imports",
        severity="error",
        payload={"http": {"status": 503}, "msg": "upstream timeout", "tags": ["a", "b"]},
    )
    assert EventFilter().matches(event)
    assert EventFilter(event_types=["ImportFailed"], sources=["import-*"]).matches(event)
    assert not EventFilter(event_types=["ServiceError"]).matches(event)
    assert not EventFilter(sources=["export-*"]).matches(event)
    assert EventFilter(services=["imports"], min_severity="warning").matches(event)
    assert not EventFilter(min_severity="critical").matches(event)
    assert not EventFilter(include_replays=False).matches(event.model_copy(update={"replay": True}))

    def holds(path: str, op: str, value: object = None) -> bool:
        return PayloadPredicate(path=path, op=op, value=value).holds(event.payload)

    assert holds("http.status", "eq", 503) and holds("http.status", "gte", 500)
    assert not holds("http.status", "lt", 500) and holds("http.status", "in", [502, 503])
    assert holds("msg", "matches", r"time(out)?") and holds("tags", "contains", "b")
    assert holds("http", "exists") and not holds("http.code", "exists")
    assert holds("http.code", "exists", False)
    assert not holds("msg", "gt", 5)  # a string and a number: no match, no error
    with pytest.raises(ValueError):
        PayloadPredicate(path="x", op="in", value=3)


def test_a_storm_coalesces_per_fingerprint() -> None:
    events = [
        Event(event_type="ServiceError", source="api", payload={"message": f"timeout after {i} ms"})
        for i in range(1000)
    ] + [Event(event_type="MetricReport", source="api")] * 5
    events.append(Event(event_type="ServiceUnhealthy", source="db", severity="critical"))
    observations = coalesce(events, DefaultDetector(), fingerprinter_for_tests())
    assert sorted(o.count for o in observations) == [1, 1000]
    storm = next(o for o in observations if o.count == 1000)
    newest = max(events[:1000], key=lambda e: e.timestamp)
    assert storm.sample.timestamp == newest.timestamp
    assert storm.first_seen == min(e.timestamp for e in events[:1000])
    assert storm.category is ProblemCategory.ERROR and storm.service == "api"


async def test_ten_thousand_identical_errors_are_one_incident(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    temporal_env: WorkflowEnvironment,
    worker: str,
) -> None:
    client = temporal_env.client
    settings = mesh_settings(redis_url, database_url, stream_prefix, listener_batch_size=1000)
    redis_client = aioredis.Redis.from_url(redis_url)
    store = await EventStore.connect(database_url)
    try:
        mesh = EventMesh(redis_client)
        storm = [
            Event(
                event_type=EventType.SERVICE_ERROR,
                source="import-service",
                service=f"import-{stream_prefix}",
                payload={"message": "connection refused to db:5432", "request": i},
            )
            for i in range(10_000)
        ]
        other = Event(
            event_type=EventType.SERVICE_TIMEOUT,
            source="import-service",
            service=f"import-{stream_prefix}",
            payload={"duration_s": 30},
        )
        info = [Event(event_type="BookmarkCreated", source="bookmarks") for _ in range(50)]
        await mesh.publish_many([*storm, other, *info], stream=f"{stream_prefix}:imports")
        router = incident_router(client, task_queue=worker, cool_down_s=600)
        ingestor = make_ingestor(settings, redis_client, store, incidents=router)
        await drain(ingestor)
    finally:
        await redis_client.aclose()
        await store.close()

    assert ingestor.stats.stored == 10_051
    assert ingestor.stats.problems == 10_001
    assert router.stats.signals == router.stats.observations <= 22  # per batch, not per event
    [storm_obs] = coalesce(storm[:1], DefaultDetector(), fingerprinter_for_tests())
    handle = client.get_workflow_handle(f"incident-{storm_obs.fingerprint}")
    status = await handle.query(IncidentWorkflow.status)
    assert isinstance(status, IncidentStatus)
    assert status.events == 10_000
    assert status.observations == router.stats.observations - 1
    assert status.severity is ProblemSeverity.HIGH and status.category is ProblemCategory.ERROR
    assert status.last_sample is not None and status.last_sample.payload["request"] >= 9_000
    assert status.open

    started: list[WorkflowExecution] = []

    async def count() -> bool:
        started.clear()
        query = f"TaskQueue='{worker}' AND WorkflowType='IncidentWorkflow'"
        started.extend([w async for w in client.list_workflows(query)])
        return len(started) == 2

    for _ in range(50):
        if await count():
            break
        await asyncio.sleep(0.2)
    assert len(started) == 2, [w.id for w in started]
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(search_attributes.FINGERPRINT) == storm_obs.fingerprint
    assert desc.typed_search_attributes.get(search_attributes.SERVICE) == f"import-{stream_prefix}"
    for w in started:
        await client.get_workflow_handle(w.id).terminate("test done")


async def test_incident_started_by_hand_with_the_temporal_cli(
    temporal_env: WorkflowEnvironment, worker: str
) -> None:
    workflow_id = f"incident-manual-{uuid.uuid4().hex[:8]}"
    target = temporal_env.client.service_client.config.target_host
    payload = {
        "event_type": "ServiceTimeout",
        "source": "import-service",
        "payload": {"duration_s": 30},
    }
    IncidentInput.model_validate(payload)
    process = await asyncio.create_subprocess_exec(
        str(binaries.temporal_cli()),
        "workflow",
        "start",
        "--address",
        target,
        "--type",
        "IncidentWorkflow",
        "--task-queue",
        worker,
        "--workflow-id",
        workflow_id,
        "--input",
        json.dumps(payload),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    handle = temporal_env.client.get_workflow_handle(workflow_id)
    for _ in range(50):
        try:
            status = await handle.query(IncidentWorkflow.status)
            break
        except Exception:
            await asyncio.sleep(0.1)
    assert status.events == 1 and status.observations == 1
    assert status.last_sample is not None
    assert status.last_sample.event_type == "ServiceTimeout"
    assert status.last_sample.payload == {"duration_s": 30}
    assert status.template == "ServiceTimeout from import-service"
    await handle.terminate("test done")


async def test_incident_closes_when_quiet_and_reopens_as_a_new_run(
    temporal_env: WorkflowEnvironment, worker: str
) -> None:
    client = temporal_env.client
    [observation] = coalesce(
        [Event(event_type="ServiceError", source="api", payload={"message": uuid.uuid4().hex})],
        DefaultDetector(),
        fingerprinter_for_tests(),
    )
    router = incident_router(client, task_queue=worker, cool_down_s=0.5)
    # two observations of one incident sent together go as one signal carrying both
    await router.signal_all([observation, observation])
    assert (router.stats.signals, router.stats.merged) == (1, 1)
    workflow_id = f"incident-{observation.fingerprint}"
    handle = client.get_workflow_handle_for(IncidentWorkflow.run, workflow_id)
    first = await handle.result()
    assert (first.events, first.observations, first.open) == (2, 1, False)
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.COMPLETED and desc.close_time is not None
    # the quiet period is a workflow timer: it runs from the last observation
    assert desc.close_time - desc.start_time >= timedelta(seconds=0.5)
    await router.signal_all([observation])
    second = client.get_workflow_handle_for(IncidentWorkflow.run, workflow_id)
    assert (await second.result()).events == 1
    assert (await second.describe()).run_id != desc.run_id

    # the run replays deterministically from its history (signals, timer, completion)
    history = await client.get_workflow_handle(workflow_id, run_id=desc.run_id).fetch_history()
    await Replayer(
        workflows=[IncidentWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)


async def test_continued_incident_keeps_its_counts(time_skipping_env: WorkflowEnvironment) -> None:
    client = time_skipping_env.client
    queue = f"q-{uuid.uuid4().hex[:8]}"
    # continue-as-new happens in the cool-down, after the incident was handled
    carried = IncidentStatus(fingerprint="fp-carried", events=41, observations=7, resolved=True)
    async with Worker(client, task_queue=queue, workflows=[IncidentWorkflow]):
        result = await client.execute_workflow(
            IncidentWorkflow.run,
            IncidentInput(event_type="ServiceError", source="api", cool_down_s=60, carried=carried),
            id=f"incident-carried-{uuid.uuid4().hex[:6]}",
            task_queue=queue,
        )
    assert (result.events, result.observations, result.fingerprint) == (41, 7, "fp-carried")


def _own_problem_and_probe(service: str) -> tuple[Event, Event]:
    """A service's own error report, and the health probe's failure of the same service."""
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
    return own, probe


async def test_a_failed_health_probe_joins_the_services_own_incident(
    temporal_env: WorkflowEnvironment, stream_prefix: str
) -> None:
    """No worker runs here: what is checked is where the router sends each observation."""
    service = f"bookmark-{stream_prefix}"
    own, probe = _own_problem_and_probe(service)

    def router(correlate_s: float) -> IncidentRouter:
        return IncidentRouter(
            temporal_env.client,
            task_queue=f"nobody-{stream_prefix}",
            detector=DefaultDetector(),
            fingerprinter=fingerprinter_for_tests(),
            correlate_s=correlate_s,
        )

    together = router(120.0)
    # one batch, the probe first: the service's own problem is still routed first
    observations = together.observe([probe, own])
    await together.signal_all(observations)
    assert together.stats.correlated == 1
    own_id, probe_id = (
        workflow_id_for(o) for o in sorted(observations, key=lambda o: o.sample.id == probe.id)
    )
    history = await temporal_env.client.get_workflow_handle(own_id).fetch_history()
    signals = [
        e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert len(signals) == 2  # the start's observe and the probe's
    with pytest.raises(RPCError):
        await temporal_env.client.get_workflow_handle(probe_id).describe()

    apart = router(0.0)  # correlation off: the probe opens its own incident
    await apart.signal_all(apart.observe([own, probe]))
    assert apart.stats.correlated == 0
    assert (await temporal_env.client.get_workflow_handle(probe_id).describe()).run_id
    for wid in (own_id, probe_id):
        await temporal_env.client.get_workflow_handle(wid).terminate("test done")


async def test_a_probe_failure_after_the_incident_resolved_opens_its_own(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, stream_prefix: str
) -> None:
    """Healed, then down again a minute later: that outage is news, not a late duplicate."""
    queue = f"q-{stream_prefix}"
    service = f"bookmark-{stream_prefix}"
    own, probe = _own_problem_and_probe(service)
    router = IncidentRouter(
        temporal_env.client,
        task_queue=queue,
        detector=DefaultDetector(),
        fingerprinter=fingerprinter_for_tests(),
        cool_down_s=60,
        correlate_s=120,
    )
    async with aiops_worker(temporal_env.client, queue, database_url, redis_url):
        [first] = router.observe([own])
        await router.signal_all([first])
        handle = temporal_env.client.get_workflow_handle(workflow_id_for(first))
        for _ in range(100):  # nothing is known: it escalates and resolves at once
            if (await handle.query(IncidentWorkflow.status)).resolved:
                break
            await asyncio.sleep(0.1)
        [later] = router.observe([probe])
        await router.signal_all([later])
        assert router.stats.correlated == 0
        assert await temporal_env.client.get_workflow_handle(workflow_id_for(later)).describe()
        for wid in (workflow_id_for(first), workflow_id_for(later)):
            await temporal_env.client.get_workflow_handle(wid).terminate("test done")
