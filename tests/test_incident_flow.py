"""An incident end to end on real Temporal, PostgreSQL and Redis: detected, diagnosed against
the knowledge graph, healed within the policy, learned from; and the unknown path."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiops_worker import aiops_worker
from known_problems import register_simulated
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.incident import IncidentInput
from aiops.policy.models import ActionSpec
from workflows.incident import IncidentWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def _export(env: WorkflowEnvironment, wid: str, name: str) -> None:
    """EXPORT_HISTORIES=1 pytest ... rewrites tests/histories/, which CI replays."""
    if os.environ.get("EXPORT_HISTORIES"):
        history = await env.client.get_workflow_handle(wid).fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


async def _seed(kg: KnowledgeGraph) -> tuple[str, str]:
    problem = await kg.add_problem(
        ProblemIn(
            description="Import requests time out with large bookmark files",
            category="timeout",
            severity="high",
            error_patterns=["import timed out", "ServiceTimeout"],
            context={"service": "import-service"},
        )
    )
    await register_simulated(kg.pool, "import-service", config_keys=("batch_size",))
    sim = {"success_probability": 1.0}
    solution = await kg.add_solution(
        problem.id,
        SolutionIn(
            description="Lower the import batch size and clear the import cache",
            actions=[
                ActionSpec(
                    action_type="config_update",
                    target="import-service",
                    parameters={**sim, "key": "batch_size", "value": 100},
                    order=1,
                ),
                ActionSpec(
                    action_type="cache_clear", target="import-service", parameters=sim, order=2
                ),
            ],
        ),
    )
    return problem.id, solution


async def test_known_problem_is_healed_and_learned(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with aiops_worker(client, queue, database_url, redis_url) as kg:
        problem_id, solution_id = await _seed(kg)
        event_id = uuid.uuid4()
        # a fixed id: the saved history's file name must be the workflow id it replays as
        wid = "incident-history-healed"
        result = await client.execute_workflow(
            IncidentWorkflow.run,
            IncidentInput(
                event_type="ServiceTimeout",
                source="import-service",
                service="import-service",
                payload={"message": "bookmark import timed out after 30s on a large file"},
                event_id=event_id,
                cool_down_s=1,
            ),
            id=wid,
            task_queue=queue,
        )
        stats = await kg.solution_stats(solution_id)
        await _export(temporal_env, wid, wid)
    assert result.outcome == "healed", result.diagnosis
    assert result.diagnosis is not None and result.diagnosis.outcome == "matched"
    assert result.diagnosis.chosen is not None
    assert result.diagnosis.chosen.candidate.problem_id == problem_id
    assert result.healing_result is not None
    assert [s.status for s in result.healing_result.steps] == ["done", "done"]
    assert result.learning is not None and result.learning.after is not None
    assert (stats.attempt_count, stats.success_count) == (1, 1)
    assert result.learning.before is not None and result.learning.before.attempt_count == 0
    # the outcome event points back at the event that opened the incident
    redis = aioredis.Redis.from_url(redis_url)
    try:
        entries = await redis.xrange("events:aiops") or []
    finally:
        await redis.aclose()
    outcomes = [json.loads(fields[b"event"]) for _, fields in entries if fields]
    mine = [
        e
        for e in outcomes
        if e["payload"].get("incident") == result.fingerprint
        or e.get("causation_id") == str(event_id)
    ]
    assert any(
        e["event_type"] == "OutcomeRecorded" and e["causation_id"] == str(event_id) for e in mine
    )
    assert result.resolved and not result.open


async def test_a_healed_incident_on_the_current_path_is_saved_for_replay(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    """The histories above are kept as the code that wrote them left them (old paths stay
    replayable); this one follows the current path (every patch taken)."""
    queue = f"q-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with aiops_worker(client, queue, database_url, redis_url) as kg:
        await _seed(kg)
        wid = "incident-history-healed-current"
        result = await client.execute_workflow(
            IncidentWorkflow.run,
            IncidentInput(
                event_type="ServiceTimeout",
                source="import-service",
                service="import-service",
                payload={"message": "bookmark import timed out after 30s on a large file"},
                cool_down_s=1,
            ),
            id=wid,
            task_queue=queue,
        )
        history = await client.get_workflow_handle(wid).fetch_history()
        await _export(temporal_env, wid, wid)
    assert result.outcome == "healed", result.diagnosis
    assert result.problem_id is not None
    # the path to the fix holds only what the fix needs: the problem is recorded after the
    # healing, before learning (which needs its id)
    order = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            order.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.HasField("child_workflow_execution_completed_event_attributes"):
            done = event.child_workflow_execution_completed_event_attributes
            order.append("done " + done.workflow_type.name)
        elif event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            start = event.start_child_workflow_execution_initiated_event_attributes
            order.append("start " + start.workflow_type.name)
    healed = order.index("done HealingWorkflow")
    assert order.index("record_problem") > healed
    # one patch marker stands for every patch (context-first); silences, the mode and the
    # policy are read in one local activity before the diagnosis, none after it
    marks = _markers(history)
    assert [data["id"] for kind, data in marks if kind == "core_patch"] == ["context-first"]
    local = [
        (data["activity_type"], at)
        for (kind, data), at in zip(marks, _marker_positions(history), strict=True)
        if kind == "core_local_activity"
    ]
    diagnosis_started, healing_started = _child_starts(history)[:2]
    assert [name for name, at in local if at < diagnosis_started] == ["incident_context"]
    assert [name for name, at in local if diagnosis_started < at < healing_started] == []
    assert order.index("record_problem") < order.index("start LearningWorkflow")
    # the last step's progress came with the result: the status shows the plan done
    assert result.healing is not None and result.healing.phase == "done"
    assert [s.status for s in result.healing.steps] == ["done", "done"]


def _markers(history: WorkflowHistory) -> list[tuple[str, dict[str, Any]]]:
    """(marker name, its decoded data) of each marker: a patch's id, a local activity's
    type."""
    found = []
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            key = "patch-data" if marker.marker_name == "core_patch" else "data"
            data = json.loads(marker.details[key].payloads[0].data)
            found.append((marker.marker_name, data))
    return found


def _marker_positions(history: WorkflowHistory) -> list[int]:
    return [
        i
        for i, event in enumerate(history.events)
        if event.HasField("marker_recorded_event_attributes")
    ]


def _child_starts(history: WorkflowHistory) -> list[int]:
    return [
        i
        for i, event in enumerate(history.events)
        if event.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]


async def test_unknown_problem_escalates_without_acting(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with aiops_worker(client, queue, database_url, redis_url) as kg:
        await _seed(kg)
        wid = "incident-history-unknown"
        result = await client.execute_workflow(
            IncidentWorkflow.run,
            IncidentInput(
                event_type="ServiceError",
                source="vault",
                payload={"message": "TLS handshake failed: certificate for vault.internal expired"},
                cool_down_s=1,
            ),
            id=wid,
            task_queue=queue,
        )
        problems = await kg.get_problem_count()
        await _export(temporal_env, wid, wid)
    assert result.outcome == "unknown"
    assert result.diagnosis is not None and result.diagnosis.outcome == "unknown"
    assert result.healing_workflow_id is None and result.healing_result is None
    assert problems == 2  # the unknown problem is recorded for learning
