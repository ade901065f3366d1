"""Incident latency and throughput, from XADD of a problem event to a healed outcome.

Everything real and in this process's reach: the embedded Temporal dev server, PostgreSQL
with pgvector and Redis (durable settings, as `aiops dev up` runs them), the listener
pipeline, the full worker, the simulated adapter. The baseline, measured in the same run on
the same servers, is a bare workflow that runs one no-op activity.

    .venv/bin/python bench/incidents.py [--sequential 30] [--burst 60] [--explain]
        [--temporal-defaults]

The Temporal server runs as `aiops dev up` runs it: with aiops' dynamic configuration (the
history service's read limits lifted, as the compose file has them too) and its SQLite file in
write-ahead-log mode (aiops/devstack/temporal_config.py); `--temporal-defaults` runs it with
Temporal's and SQLite's own defaults instead, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import redis.asyncio as aioredis
from bare_sandboxed import SandboxedBareWorkflow
from cryptography.fernet import Fernet
from skeleton import SkeletonIncidentWorkflow
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from aiops.config import load_settings
from aiops.db.migrate import migrate
from aiops.db.pool import create_pool
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port
from aiops.embeddings import CachedEmbedder, MiniLMEmbedder
from aiops.events.detection import DefaultDetector
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.events.routing import IncidentRouter
from aiops.events.store import EventStore
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.healing import HealingResult
from aiops.models.incident import IncidentStatus
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceDefinition, ServiceRegistry
from workers.listener import default_fingerprinter, make_ingestor
from workers.worker import activities_of, activity_holders
from workflows import ALL_WORKFLOWS


@activity.defn(name="bench_noop")
async def noop(value: int) -> int:
    return value


@workflow.defn(name="BareWorkflow", sandboxed=False)  # defined in __main__
class BareWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        result: int = await workflow.execute_activity(
            "bench_noop", value, start_to_close_timeout=timedelta(seconds=30)
        )
        return result


class ActivityClock(Interceptor):
    """When each activity ran (epoch start, end, name, local?, workflow id), for --explain."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float, str, bool, str]] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Timed(next, self.runs)


class _Timed(ActivityInboundInterceptor):
    def __init__(
        self, next: ActivityInboundInterceptor, runs: list[tuple[float, float, str, bool, str]]
    ) -> None:
        super().__init__(next)
        self._runs = runs

    async def execute_activity(self, input: ExecuteActivityInput) -> object:
        info = activity.info()
        started = time.time()
        try:
            return await self.next.execute_activity(input)
        finally:
            self._runs.append(
                (started, time.time(), info.activity_type, info.is_local, info.workflow_id or "")
            )


class CpuMeter:
    """CPU seconds spent by this process (listener, worker, client) and by each server
    (with its children: PostgreSQL's backends), so a phase's cost can be read per run."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}

    def _server(self, proc: psutil.Process) -> float:
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def read(self) -> dict[str, float]:
        own = psutil.Process().cpu_times()
        return {
            "aiops": own.user + own.system,
            **{name: self._server(proc) for name, proc in self._procs.items()},
        }


def cpu_per_run(before: dict[str, float], after: dict[str, float], runs: int) -> str:
    return (
        ", ".join(f"{name} {(after[name] - before[name]) / runs * 1000:.0f}" for name in before)
        + f" (total {sum(after.values()) - sum(before.values()):.2f} s / {runs})"
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def seed(kg: KnowledgeGraph) -> None:
    problem = await kg.add_problem(
        ProblemIn(
            description="Import requests time out with large bookmark files",
            category="timeout",
            # no service of its own: a runbook for every import service (one per incident here)
        )
    )
    await kg.add_solution(
        problem.id,
        SolutionIn(
            description="Clear the import cache",
            actions=[
                ActionSpec(
                    action_type="cache_clear",
                    target="{service}",
                    parameters={"success_probability": 1.0},
                )
            ],
        ),
    )


async def healed_after(
    client: Client, incident_id: str, since: float, settle: bool = False
) -> float:
    """Seconds from `since` (epoch) to the close of the incident's HealingWorkflow.

    Only server-side calls, and long polls where the server has them: the incident's
    history is followed as it grows until the healing child is started, then its result
    is awaited. A status query every few ms would be answered by the same worker, and a
    call to the server every few ms would load the server, and both slow down the incident
    they measure (the bare workflow is measured with one long poll of its result).
    `settle`: return only once the incident has also learned (its learning child closed), so
    that one incident at a time really is one at a time."""
    handle = client.get_workflow_handle(incident_id)
    while True:
        try:
            run_id = (await handle.describe()).run_id
            break
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise  # not found: the listener has not started it yet
        await asyncio.sleep(0.01)
    healing_id = f"{incident_id}-healing-{run_id[:8]}"

    async def healing_started() -> None:
        run = client.get_workflow_handle(incident_id, run_id=run_id)
        async for event in run.fetch_history_events(wait_new_event=True):
            started = event.start_child_workflow_execution_initiated_event_attributes
            if event.HasField("start_child_workflow_execution_initiated_event_attributes") and (
                started.workflow_id == healing_id
            ):
                return
        raise RuntimeError(f"{incident_id} closed without healing")

    try:
        await asyncio.wait_for(healing_started(), 60)
    except TimeoutError:
        status = await handle.query("status", result_type=IncidentStatus)
        raise RuntimeError(f"{incident_id} never healed: {status.summary()}") from None
    healing = client.get_workflow_handle(healing_id, result_type=HealingResult)
    while True:
        try:
            result = await healing.result()
            break
        except RPCError as error:  # initiated, not yet started: a moment
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
        await asyncio.sleep(0.01)
    if result.outcome != "healed":
        raise RuntimeError(f"{incident_id} ended {result.outcome}: {result.detail}")
    closed = (await healing.describe()).close_time
    assert closed is not None
    if settle:  # the incident goes on to record and learn: the next one waits for that
        learning_id = f"{incident_id}-learning-{run_id[:8]}"
        run = client.get_workflow_handle(incident_id, run_id=run_id)
        async for event in run.fetch_history_events(wait_new_event=True):
            if event.HasField("child_workflow_execution_completed_event_attributes") and (
                event.child_workflow_execution_completed_event_attributes.workflow_execution.workflow_id
                == learning_id
            ):
                break
    return closed.timestamp() - since


async def timeline(
    client: Client, top_id: str, since: float, clock: ActivityClock, label: str = "incident"
) -> None:
    """Where the time of one incident went: every history event of the incident and its
    children, and every activity the worker ran for them (local ones leave only a marker
    in the history), in ms after the XADD."""
    rows: list[tuple[float, str, str]] = []
    ids = [top_id]
    names: dict[str, str] = {}
    while ids:
        wid = ids.pop()
        names[wid] = wid.rsplit("-", 2)[-2] if wid != top_id else label
        try:
            history = await client.get_workflow_handle(wid).fetch_history()
        except RPCError:
            continue  # learning may not have started yet: the clock stops at healed
        for event in history.events:
            at = event.event_time.ToDatetime(tzinfo=UTC).timestamp() - since
            kind: str = event.WhichOneof("attributes") or ""
            rows.append((at, names[wid], kind.removesuffix("_event_attributes")))
            if kind == "start_child_workflow_execution_initiated_event_attributes":
                ids.append(
                    event.start_child_workflow_execution_initiated_event_attributes.workflow_id
                )
    for start, end, name, local, wid in clock.runs:
        if wid in names:
            kind = "local activity" if local else "activity"
            rows.append((start - since, names[wid], f"  > {kind} {name}"))
            rows.append((end - since, names[wid], f"  < {name} ({(end - start) * 1000:.1f} ms)"))
    for at, who, name in sorted(rows):
        print(f"{at * 1000:8.1f} ms  {who:10} {name}")


# Where an incident's time goes, segment by segment: (label, workflow, event, after which
# mark). "server" segments are Temporal's own hops (a child started, a task handed to a
# poller); "worker" ones are this process running workflow code and activities.
_START_CHILD = "start_child_workflow_execution_initiated"
_MARKS: list[tuple[str, str, str, int]] = [
    ("server: XADD -> incident started (listener)", "incident", "workflow_execution_started", -1),
    ("server: incident task 1 dispatched", "incident", "workflow_task_started", 0),
    ("worker: incident task 1", "incident", "workflow_task_completed", 1),
    ("server: diagnosis child started", "diagnosis", "workflow_execution_started", 2),
    ("server: its first task scheduled", "diagnosis", "workflow_task_scheduled", 3),
    ("server: its first task dispatched", "diagnosis", "workflow_task_started", 4),
    ("worker: diagnosis task (search)", "diagnosis", "workflow_execution_completed", 5),
    ("server: incident told", "incident", "child_workflow_execution_completed", 6),
    ("server: incident task dispatched", "incident", "workflow_task_started", 7),
    (
        "worker: incident task (plan -> healing)",
        "incident",
        "start_child_workflow_execution_initiated",
        8,
    ),
    ("server: healing child started", "healing", "workflow_execution_started", 9),
    ("server: its first task scheduled", "healing", "workflow_task_scheduled", 10),
    ("server: its first task dispatched", "healing", "workflow_task_started", 11),
    ("worker: healing task 1 (policy, audit)", "healing", "activity_task_scheduled", 12),
    ("worker: execute_action", "healing", "activity_task_completed", 13),
    ("server: healing task dispatched", "healing", "workflow_task_started", 14),
    ("worker: healing to its close", "healing", "workflow_execution_completed", 15),
]


async def phases(client: Client, runs: list[tuple[str, float]]) -> None:
    """The median of each segment of the path to healed, over the given incidents
    (id, XADD epoch); the segments add up to the XADD -> healed latency."""
    spent: dict[int, list[float]] = {}
    for incident_id, since in runs:
        events: dict[str, list[tuple[float, str]]] = {}
        ids = [incident_id]
        while ids:
            wid = ids.pop()
            who = "incident" if wid == incident_id else wid.rsplit("-", 2)[-2]
            for event in (await client.get_workflow_handle(wid).fetch_history()).events:
                kind = (event.WhichOneof("attributes") or "").removesuffix("_event_attributes")
                at = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
                events.setdefault(who, []).append((at, kind))
                if kind == "start_child_workflow_execution_initiated":
                    child = event.start_child_workflow_execution_initiated_event_attributes
                    if "-learning-" not in child.workflow_id:
                        ids.append(child.workflow_id)
        marks: list[float] = []
        for _, who, kind, after in _MARKS:
            floor = since if after < 0 else marks[after]
            marks.append(min(t for t, k in events[who] if k == kind and t >= floor))
        for i, at in enumerate(marks):
            spent.setdefault(i, []).append(at - (since if i == 0 else marks[i - 1]))
    print(f"where the time goes (median of {len(runs)} incidents, ms):")
    total = 0.0
    for i, (label, *_rest) in enumerate(_MARKS):
        median = statistics.median(spent[i]) * 1000
        total += median
        print(f"  {label:46}{median:7.1f}")
    server = sum(statistics.median(spent[i]) for i, m in enumerate(_MARKS) if m[0][0] == "s")
    print(f"  {'sum of medians':46}{total:7.1f}  (server hops {server * 1000:.0f})")


async def main(sequential: int, burst: int, explain: bool, temporal_defaults: bool) -> None:
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-"))
    stack = DevStack(
        home,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        postgres_port=free_port(),
        redis_port=free_port(),
        temporal_dynamic_config={} if temporal_defaults else None,
        temporal_sqlite_pragmas={} if temporal_defaults else None,
    )
    config = (
        "Temporal's defaults"
        if temporal_defaults
        else "aiops' dynamic config and SQLite write-ahead log"
    )
    print(f"starting servers under {home} (Temporal with {config}) ...", flush=True)
    state = (await stack.up()).state
    try:
        urls = {name: svc.url for name, svc in state.services.items()}
        await migrate(urls["postgres"], 384)
        settings = load_settings().model_copy(
            update={
                "database_url": urls["postgres"],
                "redis_url": urls["redis"],
                "temporal_address": urls["temporal"],
                "listener_streams": "events:bench*",
                "listener_block_ms": 50,
            }
        )
        client = await Client.connect(urls["temporal"], data_converter=pydantic_data_converter)
        pool = await create_pool(urls["postgres"], max_size=20)
        redis = aioredis.Redis.from_url(urls["redis"])
        mesh = EventMesh(redis)
        kg = KnowledgeGraph(pool, CachedEmbedder(MiniLMEmbedder()))
        await seed(kg)
        # every incident acts on the same target: lift the rate limit, keep everything else
        policy = home / "policy.yaml"
        policy.write_text("rate_limit:\n  max_actions: 100000\n")
        fernet = Fernet(Fernet.generate_key())
        holders = activity_holders(pool, fernet, home / "logs", kg, mesh, policy, simulated=True)
        registry = ServiceRegistry(pool, fernet)

        async def register(name: str) -> None:
            """A service the simulated adapter acts for (AIOPS_SIMULATED_ADAPTER=1)."""
            await registry.register(
                ServiceDefinition(
                    name=name,
                    endpoint="http://127.0.0.1:9",
                    health_check=None,
                    metadata={"adapter": "simulated"},
                )
            )

        store = await EventStore.connect(urls["postgres"])
        router = IncidentRouter(
            client,
            task_queue="aiops",
            detector=DefaultDetector(),
            fingerprinter=default_fingerprinter(),
            cool_down_s=5,
        )
        ingestor = make_ingestor(settings, redis, store, consumer="bench", incidents=router)
        stop = asyncio.Event()
        clock = ActivityClock()
        async with Worker(
            client,
            task_queue="aiops",
            workflows=[
                *ALL_WORKFLOWS,
                BareWorkflow,
                SandboxedBareWorkflow,
                SkeletonIncidentWorkflow,
            ],
            activities=[*activities_of(*holders), noop],
            max_concurrent_activities=100,
            interceptors=[clock] if explain else [],
        ):
            listening = asyncio.create_task(ingestor.run(stop))
            await ingestor.consumer.discover(force=True)

            measured: list[tuple[str, float]] = []

            async def incident(i: int) -> float:
                # a service per incident: each event is its own problem fingerprint
                event = Event(
                    event_type="ServiceTimeout",
                    source=f"import-service-{i}",
                    payload={"message": "bookmark import timed out after 30s on a large file"},
                )
                await register(event.source)
                started = time.time()
                await mesh.publish(event, stream="events:bench")
                [observation] = router.observe([event])
                incident_id = f"incident-{observation.fingerprint}"
                if i >= 0:
                    measured.append((incident_id, started))
                return await healed_after(client, incident_id, started, settle=i < 10_000)

            async def bare(i: int, sandboxed: bool = False) -> float:
                started = time.time()
                await client.execute_workflow(
                    SandboxedBareWorkflow.run if sandboxed else BareWorkflow.run,
                    i,
                    id=f"bare-{uuid.uuid4().hex}",
                    task_queue="aiops",
                )
                return time.time() - started

            async def skeleton() -> float:
                """Start to the close of its healing child, as an incident is measured."""
                skeleton_id = f"skeleton-{uuid.uuid4().hex}"
                started = time.time()
                await client.execute_workflow(
                    SkeletonIncidentWorkflow.run, "incident", id=skeleton_id, task_queue="aiops"
                )
                closed = (
                    await client.get_workflow_handle(f"{skeleton_id}-healing").describe()
                ).close_time
                assert closed is not None
                return closed.timestamp() - started

            await incident(-1)  # warm up: model load, caches, connections
            await bare(-1)
            await bare(-1, sandboxed=True)
            await skeleton()
            print(f"sequential: {sequential} incidents one at a time ...", flush=True)
            cpu = CpuMeter({name: svc.process.pid for name, svc in state.services.items()})
            cpu_start = cpu.read()
            inc_lat = [await incident(i) for i in range(sequential)]
            inc_cpu = cpu_per_run(cpu_start, cpu.read(), sequential)
            if explain:
                await phases(client, measured)
            if explain:
                explained = Event(
                    event_type="ServiceTimeout",
                    source="import-service-explained",
                    payload={"message": "bookmark import timed out after 30s on a large file"},
                )
                await register(explained.source)
                started = time.time()
                await mesh.publish(explained, stream="events:bench")
                [observation] = router.observe([explained])
                explained_id = f"incident-{observation.fingerprint}"
                await healed_after(client, explained_id, started, settle=True)
                await timeline(client, explained_id, started, clock)
            cpu_start = cpu.read()
            bare_lat = [await bare(i) for i in range(sequential)]
            bare_cpu = cpu_per_run(cpu_start, cpu.read(), sequential)
            sandboxed_lat = [await bare(i, sandboxed=True) for i in range(sequential)]
            skeleton_lat = [await skeleton() for _ in range(sequential)]
            if explain:
                bare_id = f"bare-{uuid.uuid4().hex}"
                started = time.time()
                await client.execute_workflow(BareWorkflow.run, 0, id=bare_id, task_queue="aiops")
                print("the bare workflow, for comparison:")
                await timeline(client, bare_id, started, clock, "bare")
            print(f"burst: {burst} incidents at once ...", flush=True)
            t0 = time.time()
            await asyncio.gather(*(incident(10_000 + i) for i in range(burst)))
            inc_rate = burst / (time.time() - t0)
            t0 = time.time()
            await asyncio.gather(*(bare(10_000 + i) for i in range(burst)))
            bare_rate = burst / (time.time() - t0)
            stop.set()
            await listening

        p50, p99 = statistics.median(inc_lat), pct(inc_lat, 0.99)
        b50, b99 = statistics.median(bare_lat), pct(bare_lat, 0.99)
        print()
        print(f"{'':34}{'p50':>9}{'p99':>9}{'per s':>9}")
        rows = [
            ("incident: XADD -> healed", p50, p99, inc_rate),
            ("bare one-activity workflow", b50, b99, bare_rate),
        ]
        for label, m50, m99, rate in rows:
            print(f"{label:34}{m50 * 1000:>7.0f}ms{m99 * 1000:>7.0f}ms{rate:>9.1f}")
        s50, s99 = statistics.median(sandboxed_lat), pct(sandboxed_lat, 0.99)
        print(f"{'bare, sandboxed (as aiops runs)':34}{s50 * 1000:>7.0f}ms{s99 * 1000:>7.0f}ms")
        print(
            f"incident cost vs bare: latency x{p50 / b50:.1f} (p50), "
            f"throughput x{bare_rate / inc_rate:.1f}"
        )
        print(f"incident cost vs sandboxed bare: latency x{p50 / s50:.1f} (p50)")
        k50, k99 = statistics.median(skeleton_lat), pct(skeleton_lat, 0.99)
        print(
            f"{'the shape alone (bench/skeleton.py)':34}{k50 * 1000:>7.0f}ms{k99 * 1000:>7.0f}ms"
            f"   x{k50 / b50:.1f} bare, x{k50 / s50:.1f} sandboxed bare;"
            f" the incident is x{p50 / k50:.1f} of it"
        )
        print(f"CPU ms per incident (to learned): {inc_cpu}")
        print(f"CPU ms per bare workflow:          {bare_cpu}")
        print(
            f"target: p50 < 1000 ms -> {'met' if p50 < 1.0 else 'NOT met'}; "
            f"cost < 4x bare -> {'met' if p50 / b50 < 4 else 'NOT met'} (latency)"
        )
        print(f"Temporal server: {config}")
        print(f"measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        await store.close()
        await redis.aclose()
        await pool.close()
    finally:
        stack.down()


if __name__ == "__main__":
    # SIGTERM (a CI timeout, `timeout`) must still run the finally that stops the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--burst", type=int, default=60)
    parser.add_argument(
        "--explain", action="store_true", help="print the timeline of one incident's history"
    )
    parser.add_argument(
        "--temporal-defaults",
        action="store_true",
        help="run Temporal with its own dynamic-config defaults (history reads limited to 20/s) "
        "and SQLite's rollback journal",
    )
    args = parser.parse_args()
    asyncio.run(main(args.sequential, args.burst, args.explain, args.temporal_defaults))
