"""An incident keeps its promises after an attempt that did not fix the problem: a child
that fails leaves it `failed` but still cooling down (duplicates are counted, no second
incident), and a problem that goes on past the cool-down is alerted and diagnosed again,
without the fix that failed, a bounded number of times. Real Temporal, PostgreSQL, Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiops_worker import aiops_worker
from known_problems import IMPORT_TIMEOUT, register_simulated
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from test_healing_hard_failures import export
from webhook import Receiver

from aiops.config import Settings
from aiops.events.envelope import Event
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.diagnosis import Diagnosis, DiagnosisInput
from aiops.models.incident import (
    IncidentInput,
    Observation,
    ProblemCategory,
    ProblemSeverity,
)
from aiops.policy.models import ActionSpec
from aiops.silences import SilenceStore
from workflows import ALL_WORKFLOWS
from workflows.incident import IncidentWorkflow


def _incident(**extra: Any) -> IncidentInput:
    return IncidentInput(
        event_type="ServiceTimeout",
        source="import-service",
        service="import-service",
        payload={"message": "bookmark import timed out after 30s on a large file"},
        **extra,
    )


def observation(fingerprint: str, count: int = 1) -> Observation:
    """What the listener signals for a batch of `count` more events of the problem."""
    now = datetime.now(UTC)
    return Observation(
        fingerprint=fingerprint,
        template="import timed out",
        category=ProblemCategory.TIMEOUT,
        severity=ProblemSeverity.HIGH,
        service="import-service",
        count=count,
        sample=Event(
            event_type="ServiceTimeout",
            source="import-service",
            service="import-service",
            payload={"message": "bookmark import timed out after 30s on a large file"},
        ),
        first_seen=now,
        last_seen=now,
    )


async def until_phase(handle: WorkflowHandle[Any, Any], phase: str, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 10)):
        if (await handle.query(IncidentWorkflow.status)).phase == phase:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached {phase}")


async def cooling_down(
    client: Client, queue: str, wid: str, **extra: Any
) -> WorkflowHandle[Any, Any]:
    """An incident started by hand, once its first attempt is over (it cools down)."""
    handle = await client.start_workflow(
        IncidentWorkflow.run, _incident(history_budget=10_000, **extra), id=wid, task_queue=queue
    )
    await until_phase(handle, "cooling_down")
    return handle


async def silence(pool: asyncpg.Pool, duration: timedelta, reason: str) -> None:
    """A silence of import-service, as `aiops silence add --service import-service` sets it."""
    await SilenceStore(pool).add(
        service="import-service", matchers={}, duration=duration, reason=reason, created_by="test"
    )


@workflow.defn(name="DiagnosisWorkflow", sandboxed=False)
class BrokenDiagnosis:
    """A child that fails for good (a bug, a dependency out of retries)."""

    @workflow.run
    async def run(self, input: DiagnosisInput) -> Diagnosis:
        raise ApplicationError("diagnosis crashed", non_retryable=True)


async def test_a_failed_attempt_still_cools_down_and_absorbs_duplicates(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    # fixed ids: a saved history's file name is the workflow id it replays as
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", "incident-history-failed-child"
    others = [w for w in ALL_WORKFLOWS if w.__name__ != "DiagnosisWorkflow"]
    async with aiops_worker(
        temporal_env.client, queue, database_url, redis_url, workflows=[*others, BrokenDiagnosis]
    ) as kg:
        handle = await cooling_down(temporal_env.client, queue, wid, cool_down_s=3, max_retries=0)
        for _ in range(3):  # late duplicates, as the listener signal-with-starts them
            await temporal_env.client.start_workflow(
                IncidentWorkflow.run,
                _incident(),
                id=wid,
                task_queue=queue,
                start_signal="observe",
                start_signal_args=[observation(wid, count=10)],
            )
        result = await handle.result()
        problems = await kg.get_problem_count()
        await export(temporal_env, wid, wid)
    assert result.outcome == "failed"
    # recorded although its diagnosis failed: knowledge counts every problem
    assert problems == 1 and result.problem_id is not None
    assert result.events == 31 and result.observations == 4
    assert not result.open and result.resolved
    runs = [w async for w in temporal_env.client.list_workflows(f"WorkflowId = '{wid}'")]
    assert len(runs) == 1  # the duplicates opened no second incident


async def _seed_failing_fix(kg: KnowledgeGraph) -> str:
    await register_simulated(kg.pool, "import-service")
    problem = await kg.add_problem(
        ProblemIn(
            description=IMPORT_TIMEOUT, category="timeout", context={"service": "import-service"}
        )
    )
    return await kg.add_solution(
        problem.id,
        SolutionIn(
            description="Clear the import cache",
            actions=[
                ActionSpec(
                    action_type="cache_clear",
                    target="import-service",
                    parameters={"success_probability": 0.0},
                )
            ],
        ),
    )


async def test_a_problem_that_goes_on_is_alerted_and_diagnosed_again_without_the_failed_fix(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    settings = Settings(notify_urls=f"json://127.0.0.1:{receiver.port}/hook", home=tmp_path)
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", "incident-history-persists"
    async with aiops_worker(
        temporal_env.client, queue, database_url, redis_url, settings=settings
    ) as kg:
        solution = await _seed_failing_fix(kg)
        handle = await cooling_down(temporal_env.client, queue, wid, cool_down_s=3, max_retries=1)
        first = await handle.query(IncidentWorkflow.status)
        await handle.signal(IncidentWorkflow.observe, observation(wid, count=5))
        # the second attempt, then events go on: the budget of one new attempt is spent
        for _ in range(100):
            if (await handle.query(IncidentWorkflow.status)).retries == 1:
                break
            await asyncio.sleep(0.1)
        await until_phase(handle, "cooling_down")
        await handle.signal(IncidentWorkflow.observe, observation(wid, count=5))
        result = await handle.result()
        await export(temporal_env, wid, wid)
        acted = await kg.pool.fetchval(
            "SELECT count(*) FROM action_executions WHERE workflow_id LIKE $1", f"{wid}-%"
        )
        for _ in range(50):
            if len(receiver.bodies) >= 2:
                break
            await asyncio.sleep(0.1)
    assert first.outcome == "failed" and first.retries == 0
    assert result.retries == 1 and result.excluded_solutions == [solution]
    assert result.outcome == "unknown"  # the only known fix failed: nothing left to try
    assert result.diagnosis is not None and "failed already" in result.diagnosis.why
    assert result.events == 11 and not result.open
    assert acted == 1  # the failed fix ran once, never again
    said = [json.dumps(body) for body in receiver.bodies]
    assert len(said) == 2, said  # the failure, then the re-alert; no third
    assert "still happening" in said[1] and "attempt 2 of 2" in said[1]


async def test_a_retry_waits_out_a_silence_set_after_the_failed_attempt(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    """Someone silences the service after the fix failed (a deploy is under way): when the
    problem goes on, the new attempt is held like a first one, not diagnosed and acted on,
    and each attempt's hold is audited."""
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"incident-retry-silenced-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(temporal_env.client, queue, database_url, redis_url) as kg:
        await _seed_failing_fix(kg)
        await silence(kg.pool, timedelta(seconds=1), "deploy of v3")
        handle = await cooling_down(temporal_env.client, queue, wid, cool_down_s=2, max_retries=1)
        await silence(kg.pool, timedelta(seconds=6), "deploy of v4")
        await handle.signal(IncidentWorkflow.observe, observation(wid, count=5))
        await until_phase(handle, "silenced")
        held = await handle.query(IncidentWorkflow.status)
        history = await handle.fetch_history()
        result = await handle.result()  # the silence ends with the problem still there
        holds = await kg.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE workflow_id = $1 AND action = 'silence'", wid
        )
    children = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    assert held.retries == 1 and held.silence_reason == "deploy of v4"
    # held: the first attempt's children only, nothing of the second (tagged -r1) yet
    assert any("-diagnosis-" in c for c in children)
    assert not any("-r1" in c for c in children), children
    assert holds == 2  # each attempt's hold is audited
    assert result.retries == 1 and result.silenced_until is None
    assert result.outcome == "unknown"  # then diagnosed: the only known fix failed already


async def test_a_storm_during_a_long_silence_continues_as_new_while_held(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    """Events keep coming during a long maintenance window: every signal grows the held
    run's history, so it continues as new at its budget (still held, counts carried)
    instead of growing toward Temporal's limit."""
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"incident-held-storm-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(temporal_env.client, queue, database_url, redis_url) as kg:
        await _seed_failing_fix(kg)
        await silence(kg.pool, timedelta(minutes=30), "maintenance")
        handle = await temporal_env.client.start_workflow(
            IncidentWorkflow.run,
            _incident(cool_down_s=2, history_budget=100),
            id=wid,
            task_queue=queue,
        )
        await until_phase(handle, "silenced")
        first_run = (await handle.describe()).run_id
        for _ in range(60):
            await handle.signal(IncidentWorkflow.observe, observation(wid, count=10))
        for _ in range(100):
            status = await handle.query(IncidentWorkflow.status)
            if status.runs >= 1 and status.phase == "silenced" and status.events == 601:
                break
            await asyncio.sleep(0.1)
        latest = await temporal_env.client.get_workflow_handle(wid).describe()
        acted = await kg.pool.fetchval(
            "SELECT count(*) FROM action_executions WHERE workflow_id LIKE $1", f"{wid}-%"
        )
        await handle.terminate("test over")
    assert latest.run_id != first_run  # continued as new
    assert status.runs >= 1 and status.phase == "silenced", status
    assert status.events == 601  # the first event and 60 signals of 10, none lost
    assert acted == 0
