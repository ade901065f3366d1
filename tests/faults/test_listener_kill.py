"""kill -9 of one of three listener processes under load: one incident per problem, every
event stored exactly once.

Three real `python -m workers.listener` processes share the consumer group on one stream
(and the monitor's, where the health probe's verdicts come from) and route incidents to
the real Temporal dev server (no worker: what is counted is where the listeners send
problems). 100,000 events are published while they run; a few services
have a problem: their own error reports, and the health probe's ServiceUnhealthy for them
later on. A probe failure is a symptom of its service's own problem and must be counted on
that incident (AIOPS_INCIDENT_CORRELATE_S), whichever listener reads it. One listener is
killed -9 in the middle; the other two claim what it held.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from observed import observed_counts
from temporalio.testing import WorkflowEnvironment

from aiops.events.envelope import MONITOR_SOURCE, Event, EventType
from aiops.events.mesh import EventMesh

ROOT = Path(__file__).resolve().parents[2]
SENT = 100_000
LISTENERS = 3
PROBLEMS = 4
# each problem service: its own error reports, then the probe's failures of it
OWN_REPORTS = 150
PROBE_FAILURES = 30
GROUP = "aiops"


def _events(prefix: str) -> tuple[list[Event], dict[str, int]]:
    """SENT events in publishing order (the probe's go to the monitor's stream), and the
    problem events per problem service."""
    services = [f"{prefix}-svc{k}" for k in range(PROBLEMS)]
    problem: dict[int, Event] = {}
    # a burst of own reports early on (one or two batches: read by one listener), and the
    # probe's failures spread over the second half (read by every listener, and after the
    # kill by the survivors): only a correlation the listeners share finds their incident
    for k, service in enumerate(services):
        for n in range(OWN_REPORTS):
            at = 5_000 + k * 2_000 + 2 * n
            problem[at] = Event(
                event_type=EventType.SERVICE_ERROR,
                source=service,
                service=service,
                severity="error",
                payload={"message": f"request {n} failed: connection pool of {service} exhausted"},
            )
        for n in range(PROBE_FAILURES):
            at = int(SENT * 0.5) + n * int(SENT * 0.5) // PROBE_FAILURES + k * 11 + 3
            problem[at] = Event(
                event_type=EventType.SERVICE_UNHEALTHY,
                source=MONITOR_SOURCE,
                service=service,
                payload={"message": f"service {service} is unhealthy: its health check fails"},
            )
    events = [
        problem.get(i)
        or Event(
            event_type="MetricReport",
            source=f"{prefix}-metrics",
            payload={"n": i, "latency_ms": 10 + i % 90},
        )
        for i in range(SENT)
    ]
    counts = {s: OWN_REPORTS + PROBE_FAILURES for s in services}
    return events, counts


def _spawn(env: dict[str, str], log: Path, name: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.listener", "--incidents", "--consumer", name],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _stored(database_url: str, *streams: str) -> tuple[int, int]:
    """(rows, distinct event ids) stored from the streams."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events"
            " WHERE stream = ANY($1::text[])",
            list(streams),
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), int(row["ids"])


async def _pending_by_consumer(client: aioredis.Redis, stream: str) -> dict[str, int]:
    consumers = await client.xinfo_consumers(stream, GROUP)
    return {c["name"].decode(): int(c["pending"]) for c in consumers}


async def _counted(env: WorkflowEnvironment, workflow_id: str) -> tuple[int, int]:
    """(runs of the incident, problem events its observe signals counted)."""
    client = env.client
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    counted = 0
    for run in runs:
        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
        counted += sum(observed_counts(history))
    return len(runs), counted


async def test_listener_kill_9_of_three(
    temporal_env: WorkflowEnvironment,
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    tmp_path: Path,
    fault_table: Any,
) -> None:
    stream = f"{stream_prefix}:load"
    monitor = f"{stream_prefix}:monitor"
    queue = f"nobody-{stream_prefix}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env.update(
        {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "AIOPS_TASK_QUEUE": queue,
            "AIOPS_LISTENER_STREAMS": f"{stream},{monitor}",
            "AIOPS_MONITOR_STREAM": monitor,
            "AIOPS_DEAD_LETTER_STREAM": f"{stream_prefix}:dead",
            "AIOPS_LISTENER_GROUP": GROUP,
            "AIOPS_LISTENER_BATCH_SIZE": "500",
            "AIOPS_LISTENER_BLOCK_MS": "200",
            "AIOPS_LISTENER_CLAIM_IDLE_MS": "2000",
            "AIOPS_EVENT_TRUST": "open",
            "AIOPS_LOG_LEVEL": "INFO",
        }
    )
    events, per_service = _events(stream_prefix)
    client = aioredis.Redis.from_url(redis_url)
    for name in (stream, monitor):
        await client.xgroup_create(name, GROUP, id="0", mkstream=True)
    log = tmp_path / "listeners.log"
    names = [f"listener-{n}" for n in range(LISTENERS)]
    processes = {name: _spawn(env, log, name) for name in names}
    try:
        # every listener reads (registers in the group) before the load starts
        deadline = time.monotonic() + 90
        while set(await _pending_by_consumer(client, stream)) < set(names):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            assert all(p.poll() is None for p in processes.values()), log.read_text()[-3000:]
            await asyncio.sleep(0.2)

        mesh = EventMesh(client)
        killed: str | None = None
        chunk = 5_000
        started = time.monotonic()
        for start in range(0, SENT, chunk):
            part = events[start : start + chunk]
            await mesh.publish_many([e for e in part if e.source != MONITOR_SOURCE], stream=stream)
            await mesh.publish_many([e for e in part if e.source == MONITOR_SOURCE], stream=monitor)
            if killed is None and start >= SENT * 0.4:
                # the one holding the most entries read and not yet acknowledged: mid-batch
                held = await _pending_by_consumer(client, stream)
                killed = max(names, key=lambda n: held.get(n, 0))
                os.kill(processes[killed].pid, signal.SIGKILL)
                processes[killed].wait(timeout=10)
                held_at_kill = held.get(killed, 0)
        assert killed is not None
        published = time.monotonic() - started

        deadline = time.monotonic() + 150
        while True:
            rows, _ = await _stored(database_url, stream, monitor)
            unacked = 0
            for name in (stream, monitor):
                unacked += sum((await _pending_by_consumer(client, name)).values())
            if rows >= SENT and unacked == 0:
                break
            tail = log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"stored {rows} of {SENT}; {tail}"
            await asyncio.sleep(0.5)
        rows, ids = await _stored(database_url, stream, monitor)
        drained = time.monotonic() - started
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            process.wait(timeout=60)
        await client.aclose()

    # the incidents: one per problem service, holding every problem event
    incidents: dict[str, int] = {}
    counted: dict[str, int] = {}
    for service in per_service:
        found = [
            w.id
            async for w in temporal_env.client.list_workflows(
                f"WorkflowType = 'IncidentWorkflow' AND AiopsService = '{service}'"
            )
        ]
        incidents[service] = len(found)
        counted[service] = 0
        for workflow_id in set(found):
            _, n = await _counted(temporal_env, workflow_id)
            counted[service] += n
        for workflow_id in set(found):
            await temporal_env.client.get_workflow_handle(workflow_id).terminate("test done")
    lost = SENT - ids
    duplicated = rows - ids
    acted_twice = sum(n - 1 for n in incidents.values() if n > 1)
    missing = sum(max(0, per_service[s] - counted[s]) for s in per_service)
    recounted = sum(max(0, counted[s] - per_service[s]) for s in per_service)
    fault_table.record(
        fault="listener kill -9 (3 listeners)",
        unit="events",
        sent=SENT,
        lost=lost,
        duplicated=duplicated,
        acted_twice=acted_twice,
        note=f"{killed} held {held_at_kill}; published in {published:.0f}s, all stored "
        f"after {drained:.0f}s; {PROBLEMS} problems, incidents "
        f"{sorted(incidents.values())}; problem events counted again after the "
        f"redelivery {recounted}",
    )
    assert (lost, duplicated) == (0, 0)
    assert incidents == dict.fromkeys(per_service, 1), incidents
    assert missing == 0, counted  # no problem event left out of its incident
