"""PatternDetector: what a matching pattern decides, and the real listener opening incidents
from patterns (and from a pattern added while it runs) on the Temporal dev server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_events_helpers import mesh_settings

from aiops import search_attributes
from aiops.db.pool import create_pool
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.models.incident import ProblemCategory, ProblemSeverity
from aiops.patterns.detector import PatternDetector, actions_for, pattern_severity
from aiops.patterns.matcher import PatternMatcher
from aiops.patterns.models import Pattern
from aiops.patterns.store import PatternLibrary
from workers.listener import run_listener


def p(description: str, field: str, op: str, value: object, **extra: object) -> Pattern:
    return Pattern.model_validate(
        {
            "description": description,
            "matching_rules": [{"field": field, "operator": op, "value": value}],
            **extra,
        }
    )


def detector(*patterns: Pattern) -> PatternDetector:
    return PatternDetector(
        matcher=PatternMatcher((f"p{i}", pattern) for i, pattern in enumerate(patterns))
    )


def test_a_matching_pattern_decides_category_severity_and_text() -> None:
    d = detector(
        p(
            "memory high",
            "memory_usage",
            "greater_than",
            80,
            pattern_type="performance",
            severity="high",
        ),
        p(
            "memory critical",
            "memory_usage",
            "greater_than",
            95,
            severity="critical",
            pattern_type="performance",
        ),
        p("refused", "message", "contains", "refused", severity="warning"),
        p("bad actions", "payload.status", "equals", "failed", severity="critical"),
    )
    found = d.classify(Event(event_type="MetricReport", source="api", payload={"memory_usage": 90}))
    assert found is not None
    assert (found.category, found.severity, found.text, found.service) == (
        ProblemCategory.ANOMALY,  # a performance pattern on an event type that names none
        ProblemSeverity.HIGH,
        "memory high",  # no message in the event: the pattern's description
        "api",
    )
    # two patterns match: the more severe decides
    worst = d.classify(
        Event(event_type="MetricReport", source="api", service="web", payload={"memory_usage": 99})
    )
    assert worst is not None and worst.severity is ProblemSeverity.CRITICAL
    assert worst.text == "memory critical" and worst.service == "web"
    # the event type's own category wins; the message is the text; event-scale severities
    timeout = d.classify(
        Event(event_type="ServiceTimeout", source="db", payload={"message": "conn refused"})
    )
    assert timeout is not None
    assert (timeout.category, timeout.severity, timeout.text) == (
        ProblemCategory.TIMEOUT,
        ProblemSeverity.MEDIUM,
        "conn refused",
    )
    # no pattern matches: the default rules, unchanged
    assert (
        d.classify(Event(event_type="MetricReport", source="api", payload={"memory_usage": 5}))
        is None
    )
    fallback = d.classify(Event(event_type="ServiceError", source="api"))
    assert fallback is not None and fallback.category is ProblemCategory.ERROR
    # the engine's own bookkeeping never becomes a problem, whatever the patterns say
    internal = Event(event_type="ActionFailed", source="aiops", payload={"status": "failed"})
    assert d.classify(internal) is None
    assert d.matches == {"p0": 1, "p1": 1, "p2": 1}


def test_actions_are_filled_in_for_the_matched_service() -> None:
    pattern = p(
        "memory",
        "memory_usage",
        "gte",
        80,
        actions=[
            {"action_type": "restart", "target": "{service}"},
            {
                "action_type": "config_update",
                "target": "redis",
                "parameters": {"key": "{service}-pool", "value": 5},
            },
        ],
    )
    restart, update = actions_for(
        pattern, Event(event_type="M", source="host-1", service="billing")
    )
    assert restart.target == "billing" and update.target == "redis"
    assert update.parameters == {"key": "billing-pool", "value": 5}
    assert pattern.actions[0].target == "{service}"  # the pattern itself is unchanged
    [from_source] = actions_for(
        pattern.model_copy(update={"actions": pattern.actions[:1]}),
        Event(event_type="M", source="host-1"),
    )
    assert from_source.target == "host-1"


def test_pattern_severities() -> None:
    assert pattern_severity("Critical") is ProblemSeverity.CRITICAL
    assert pattern_severity("error") is ProblemSeverity.HIGH
    assert pattern_severity("warn") is ProblemSeverity.MEDIUM
    assert pattern_severity(None) is None and pattern_severity("loud") is None


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("timed out")


async def _incidents(client: Client, queue: str) -> dict[str, tuple[str, str]]:
    found = {}
    query = f"TaskQueue='{queue}' AND WorkflowType='IncidentWorkflow'"
    async for execution in client.list_workflows(query):
        attrs = execution.typed_search_attributes
        found[execution.id] = (
            attrs.get(search_attributes.CATEGORY) or "",
            attrs.get(search_attributes.SEVERITY) or "",
        )
    return found


async def test_the_listener_opens_incidents_from_patterns_and_reloads_them(
    redis_url: str, database_url: str, stream_prefix: str, temporal_env: WorkflowEnvironment
) -> None:
    client = temporal_env.client
    queue = f"patterns-{uuid.uuid4().hex[:8]}"
    settings = mesh_settings(
        redis_url,
        database_url,
        stream_prefix,
        temporal_address=client.service_client.config.target_host,
        temporal_task_queue=queue,
        pattern_reload_s=0.2,
        tracing="off",
    )
    pool: asyncpg.Pool = await create_pool(database_url, max_size=2)
    library = PatternLibrary(pool)
    await library.add(
        p(
            "Memory usage above 80%",
            "memory_usage",
            "greater_than",
            80,
            pattern_type="performance",
            severity="critical",
        )
    )
    redis_client = aioredis.Redis.from_url(redis_url)
    mesh = EventMesh(redis_client)
    stream = f"{stream_prefix}:metrics"
    stop = asyncio.Event()
    listener = asyncio.create_task(run_listener(settings, stop=stop, consumer="patterns-test"))
    try:
        normal = Event(event_type="MetricReport", source="api", payload={"memory_usage": 40})
        high = Event(event_type="MetricReport", source="api", payload={"memory_usage": 93})
        slow = Event(event_type="MetricReport", source="api", payload={"latency_ms": 2500})
        await mesh.publish_many([normal, high, slow], stream=stream)

        async def one_incident() -> bool:
            return len(await _incidents(client, queue)) == 1

        await _eventually(one_incident)
        [(category, severity)] = (await _incidents(client, queue)).values()
        # a metric report is informational to the default rules; the pattern made it one
        assert (category, severity) == ("anomaly", "critical")

        # a pattern added while the listener runs applies without a restart
        await library.add(
            p("Latency above one second", "latency_ms", "greater_than", 1000, severity="medium")
        )
        await asyncio.sleep(0.6)
        await mesh.publish(slow.model_copy(update={"id": uuid.uuid4()}), stream=stream)

        async def two_incidents() -> bool:
            return len(await _incidents(client, queue)) == 2

        await _eventually(two_incidents)
        assert sorted((await _incidents(client, queue)).values()) == [
            ("anomaly", "critical"),
            ("error", "medium"),
        ]
    finally:
        stop.set()
        stats = await asyncio.wait_for(listener, 30)
        await redis_client.aclose()
        for workflow_id in await _incidents(client, queue):
            await client.get_workflow_handle(workflow_id).terminate("test done")
    assert stats.stored == 4 and stats.problems == 2
    stored = {s.pattern.description: s.pattern.occurrences for s in await library.list()}
    await pool.close()
    assert stored == {"Memory usage above 80%": 1, "Latency above one second": 1}
