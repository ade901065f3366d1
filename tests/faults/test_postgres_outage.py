"""A 20-second PostgreSQL outage in the middle of a healing, after its first step acted:
the step that was in flight fails past its retry budget (5 attempts, about 15 s), the
healing rolls back instead of failing, the done step is undone once PostgreSQL is back,
the incident ends `compensated`, and a later event of the same problem is counted in the
cool-down without acting again. Its own PostgreSQL (stopped and started by the test), the
session's Temporal dev server and Redis."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio
from aiops_worker import aiops_worker
from known_problems import IMPORT_TIMEOUT, register_simulated
from temporalio.testing import WorkflowEnvironment
from test_incident_persists import _incident, observation, until_phase

from aiops.db.migrate import migrate
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.policy.models import ActionSpec
from workflows.incident import IncidentWorkflow

OUTAGE_S = 20.0  # longer than the 5 attempts (1+2+4+8 s of backoff) an action gets


@pytest_asyncio.fixture
async def own_postgres() -> AsyncIterator[DevStack]:
    home = Path(tempfile.mkdtemp(prefix="aiops-pg-outage-"))
    stack = DevStack(home, postgres_port=free_port(), services=("postgres",), fast_unsafe=True)
    try:
        await stack.up()
        yield stack
    finally:
        stack.down(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def _url(stack: DevStack) -> str:
    state = stack.load()
    assert state is not None
    return state.services["postgres"].url


async def _seed(kg: KnowledgeGraph) -> None:
    """The import timeout, fixed by two compensable simulated steps; the second takes 3 s,
    so it is in flight when the database goes away."""
    await register_simulated(kg.pool, "import-service")
    problem = await kg.add_problem(
        ProblemIn(
            description=IMPORT_TIMEOUT, category="timeout", context={"service": "import-service"}
        )
    )
    await kg.add_solution(
        problem.id,
        SolutionIn(
            description="Clear the import cache, then restart the importer",
            actions=[
                ActionSpec(
                    action_type="cache_clear",
                    target="import-service",
                    parameters={"success_probability": 1.0},
                    order=1,
                ),
                ActionSpec(
                    action_type="restart",
                    target="import-service",
                    parameters={"success_probability": 1.0, "delay_s": 3},
                    order=2,
                ),
            ],
        ),
    )


async def _step_one_acted(url: str, wid: str, timeout_s: float = 60) -> None:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                "SELECT count(*) FROM action_executions WHERE workflow_id LIKE $1"
                " AND step = '1' AND status = 'succeeded'"
                " AND idempotency_key NOT LIKE '%:compensate'",
                f"{wid}-healing-%",
            )
            if done:
                return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise AssertionError("step 1 never acted")


async def test_postgres_outage_mid_heal_rolls_back_and_does_not_act_again(
    temporal_env: WorkflowEnvironment,
    own_postgres: DevStack,
    redis_url: str,
    fault_table: object,
) -> None:
    url = _url(own_postgres)
    await migrate(url, 384)
    client = temporal_env.client
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"incident-pg-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(client, queue, url, redis_url) as kg:
        await _seed(kg)
        handle = await client.start_workflow(
            IncidentWorkflow.run,
            _incident(cool_down_s=2, max_retries=0, history_budget=10_000),
            id=wid,
            task_queue=queue,
        )
        await _step_one_acted(url, wid)
        own_postgres.down(timeout=10, only=["postgres"])
        await asyncio.sleep(OUTAGE_S)
        await own_postgres.up()
        await until_phase(handle, "cooling_down", timeout_s=120)
        # the same problem again, as the listener would signal it: counted, not acted on
        await client.start_workflow(
            IncidentWorkflow.run,
            _incident(),
            id=wid,
            task_queue=queue,
            start_signal="observe",
            start_signal_args=[observation(wid)],
        )
        result = await handle.result()
        rows = await kg.pool.fetch(
            "SELECT idempotency_key, step, status FROM action_executions WHERE workflow_id LIKE $1",
            f"{wid}-%",
        )
    acts = [r for r in rows if not r["idempotency_key"].endswith(":compensate")]
    undos = [r for r in rows if r["idempotency_key"].endswith(":compensate")]
    acted = [r["step"] for r in acts if r["status"] == "succeeded"]
    undone = [r["step"] for r in undos if r["status"] == "succeeded"]
    fault_table.record(  # type: ignore[attr-defined]
        fault="postgres outage mid-heal",
        unit="actions",
        sent=len(acts),
        lost=len(set(acted) - set(undone)),
        duplicated=len(undos) - len({r["step"] for r in undos}),
        acted_twice=len(acts) - len({r["step"] for r in acts}),
        note=f"{OUTAGE_S:.0f}s outage; {len(undone)} undone",
    )
    healing = result.healing_result
    assert healing is not None and "did not finish" in healing.detail, result.outcome
    assert result.outcome == "compensated", healing.detail
    assert "1" in acted and set(acted) <= set(undone)  # every step that acted is undone
    assert len(acts) == len({r["step"] for r in acts}) <= 2  # one healing, each step once
    assert result.events == 2 and not result.open  # the later event: counted, no new act
