"""kill -9 of the Temporal dev server while events flow through a real listener into
incidents on a real worker; restarted on the same port and the same database file.

After it: every event stored once, one incident per problem (never a second run), and each
problem's fix acted once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiops_worker import EMBEDDER
from cryptography.fernet import Fernet
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from test_events_helpers import mesh_env, mesh_settings, pending, wait_for

from aiops.db.pool import create_pool
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.incident import IncidentStatus
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceDefinition, ServiceRegistry
from faults.worker_process import start_worker, stop_worker, worker_env

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = {
    "import-service": "bookmark import timed out after 30s on a large file",
    "search-service": "search query timed out after 10s on the full-text index",
    "export-service": "export of the archive timed out after 60s while zipping",
}


@pytest_asyncio.fixture
async def own_temporal() -> AsyncIterator[DevStack]:
    """A Temporal dev server of our own, its history in a SQLite file that outlives it."""
    home = Path(tempfile.mkdtemp(prefix="aiops-tkill-"))
    stack = DevStack(
        home, temporal_port=free_port(), temporal_ui_port=free_port(), services=("temporal",)
    )
    try:
        await stack.up()
        yield stack
    finally:
        await asyncio.to_thread(stack.down, 10)
        shutil.rmtree(home, ignore_errors=True)


def _spawn_listener(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real listener that opens incidents (cool-down long enough to outlive the test)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.listener", "--consumer", "l", "--cool-down", "600"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _kill_9(stack: DevStack) -> None:
    state = stack.load()
    assert state is not None
    pid = state.services["temporal"].process.pid
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid)], timeout=20)


async def _seed(pool: asyncpg.Pool, key: bytes) -> None:
    registry = ServiceRegistry(pool, Fernet(key))
    kg = KnowledgeGraph(pool, EMBEDDER)
    for service, message in PROBLEMS.items():
        await registry.register(
            ServiceDefinition(
                name=service,
                endpoint=f"http://127.0.0.1:9/{service}",
                health_check=None,
                metadata={"adapter": "simulated"},
            )
        )
        problem = await kg.add_problem(
            ProblemIn(
                description=message,
                category="timeout",
                error_patterns=[message],
                context={"service": service},
            )
        )
        await kg.add_solution(
            problem.id,
            SolutionIn(
                description=f"clear the {service} cache",
                actions=[
                    ActionSpec(
                        action_type="cache_clear",
                        target=service,
                        parameters={"success_probability": 1.0},
                    )
                ],
            ),
        )


async def test_kill_9_of_temporal_under_load(
    own_temporal: DevStack,
    database_url: str,
    redis_url: str,
    stream_prefix: str,
    tmp_path: Path,
    fault_table: object,
) -> None:
    state = own_temporal.load()
    assert state is not None
    address = state.services["temporal"].url
    key = Fernet.generate_key()
    queue = f"q-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url)
    await _seed(pool, key)
    # entries are claimed after the default idle time (30 s): with one shorter than a batch
    # takes while Temporal is away, the listener claims back its own entries in flight and
    # signals them again (the xfail below)
    settings = mesh_settings(redis_url, database_url, stream_prefix, listener_claim_idle_ms=30_000)
    stream = f"{stream_prefix}:app"
    common = {"TEMPORAL_ADDRESS": address, "AIOPS_TASK_QUEUE": queue, "AIOPS_TRACING": "off"}
    worker = start_worker(
        worker_env(
            database_url=database_url,
            temporal_address=address,
            queue=queue,
            secret_key=key.decode(),
            home=tmp_path,
            redis_url=redis_url,
        ),
        tmp_path / "worker.log",
    )
    listener = _spawn_listener(mesh_env(settings, **common), tmp_path / "listener.log")
    client = aioredis.Redis.from_url(redis_url)
    mesh = EventMesh(client)
    published: list[Event] = []
    stop = asyncio.Event()

    async def publisher() -> None:
        i = 0
        while not stop.is_set():
            batch = [
                Event(event_type="MetricReport", source="app", payload={"i": i + k})
                for k in range(20)
            ] + [
                Event(
                    event_type="ServiceTimeout",
                    source=service,
                    service=service,
                    payload={"message": message},
                )
                for service, message in PROBLEMS.items()
            ]
            i += 20
            published.extend(batch)
            await mesh.publish_many(batch, stream=stream)
            await asyncio.sleep(0.05)

    async def stored() -> tuple[int, int, set[object]]:
        rows = await pool.fetch("SELECT id FROM events")
        ids = {r["id"] for r in rows}
        return len(rows), len(ids), ids

    async def acted() -> Counter[str]:
        rows = await pool.fetch(
            "SELECT service FROM action_executions WHERE idempotency_key NOT LIKE '%:compensate'"
        )
        return Counter(str(r["service"]) for r in rows)

    task = asyncio.create_task(publisher())
    try:
        # under load: incidents open and diagnosing, events flowing
        await wait_for(lambda: _some_incident(pool), 90, "an incident to reach its healing")
        await asyncio.to_thread(_kill_9, own_temporal)
        at_kill = len(published)
        await asyncio.sleep(1.0)
        await own_temporal.up()
        await asyncio.sleep(3.0)  # events keep flowing into the restarted server
        stop.set()
        await task

        async def all_stored() -> bool:
            return (await stored())[1] >= len(published)

        async def all_acted() -> bool:
            return set(await acted()) >= set(PROBLEMS)

        await wait_for(all_stored, 60, "every event stored")
        await wait_for(all_acted, 90, "every problem's fix")
        await wait_for(
            lambda: _drained(client, stream, settings.listener_group), 30, "acknowledged"
        )
        n, distinct, ids = await stored()
        actions = await acted()
        temporal = await Client.connect(address, data_converter=pydantic_data_converter)
        runs: Counter[str] = Counter()
        async for execution in temporal.list_workflows(
            f"WorkflowType = 'IncidentWorkflow' AND TaskQueue = '{queue}'"
        ):
            runs[execution.id] += 1
        counted: Counter[str | None] = Counter()
        for wid in runs:
            status = await temporal.get_workflow_handle(wid).query(
                "status", result_type=IncidentStatus
            )
            counted[status.service] += status.events
        alive = listener.poll() is None
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        if listener.poll() is None:
            listener.send_signal(signal.SIGTERM)
            try:
                listener.wait(timeout=20)
            except subprocess.TimeoutExpired:
                listener.kill()
        stop_worker(worker)
        await client.aclose()
        await pool.close()
    sent = {e.id for e in published}
    problems = Counter(e.service for e in published if e.event_type == "ServiceTimeout")
    unsignalled = sum(max(0, problems[s] - counted[s]) for s in problems)
    signalled_twice = sum(max(0, counted[s] - problems[s]) for s in counted)
    fault_table.record(  # type: ignore[attr-defined]
        fault="temporal kill -9 under load",
        unit="events",
        sent=len(published),
        lost=len(sent - ids) + unsignalled,
        duplicated=n - distinct + signalled_twice,
        acted_twice=sum(c - 1 for c in actions.values() if c > 1)
        + sum(c - 1 for c in runs.values() if c > 1)
        + max(0, len(runs) - len(PROBLEMS)),
        note=f"killed after {at_kill} published; {len(runs)} incidents for {len(PROBLEMS)}; "
        f"incidents counted {signalled_twice} of {sum(problems.values())} problem events twice",
    )
    assert sent - ids == set() and n == distinct
    assert len(runs) == len(PROBLEMS) and set(runs.values()) == {1}, runs
    assert actions == Counter(dict.fromkeys(PROBLEMS, 1)), actions
    assert alive, "the listener died with Temporal"
    # every problem event reached its incident (as a signal's count)
    assert unsignalled == 0, (counted, problems)
    if signalled_twice:
        # Entries whose batch waited on Temporal longer than the claim idle time are
        # claimed back by the listener itself and signalled again (and a signal applied
        # just before the kill, its answer lost, is sent again by signal_all's retry): the
        # observe signal carries no id to drop a repeat by. Nothing acts twice (one
        # incident, one action each, asserted above); the incident's event count is
        # inflated. The fix is an id per observation that
        # IncidentWorkflow remembers, a workflow change behind workflow.patched.
        pytest.xfail(f"incidents counted {signalled_twice} re-sent problem events twice")


async def _some_incident(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM remediations"))


async def _drained(client: aioredis.Redis, stream: str, group: str) -> bool:
    return await pending(client, stream, group) == 0
