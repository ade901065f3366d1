"""The escalation ladder: a fix that fails (and is rolled back) is followed by the next known
fix in the same incident, each a HealingWorkflow of its own, bounded by the policy's
max_plans_per_incident; learning scores every rung; when nothing more may be tried, the
incident escalates and tells people. Real Temporal, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from aiops_worker import aiops_worker
from known_problems import register_simulated
from temporalio.testing import WorkflowEnvironment
from test_healing_hard_failures import export
from webhook import Receiver

from aiops.config import Settings
from aiops.incident_rules import ladder_stop
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.incident import IncidentInput, IncidentStatus
from aiops.policy.models import ActionSpec
from workflows.incident import IncidentWorkflow

REPORTS = "Nightly report generation runs out of memory on the reporting host"


async def _fix(
    kg: KnowledgeGraph, problem_id: str, name: str, works: bool, record: tuple[int, int]
) -> str:
    """A simulated fix that always fails or always works, with a track record (successes,
    attempts) that decides which one diagnosis tries first."""
    solution_id = await kg.add_solution(
        problem_id,
        SolutionIn(
            description=name,
            actions=[
                ActionSpec(
                    action_type="cache_clear",
                    target="report-service",
                    parameters={"success_probability": 1.0 if works else 0.0},
                )
            ],
        ),
    )
    successes, attempts = record
    for i in range(attempts):
        await kg.record_outcome_once(f"prior:{solution_id}:{i}", solution_id, i < successes, 1.0)
    return solution_id


def _incident() -> IncidentInput:
    return IncidentInput(
        event_type="ServiceError",
        source="report-service",
        service="report-service",
        payload={"message": "nightly report generation ran out of memory on the reporting host"},
        cool_down_s=1,
    )


async def _healing_runs(env: WorkflowEnvironment, queue: str) -> list[str]:
    for _ in range(50):  # visibility is eventually consistent
        found = [
            e.id
            async for e in env.client.list_workflows(
                f"WorkflowType = 'HealingWorkflow' AND TaskQueue = '{queue}'"
            )
        ]
        if len(found) >= 3:
            return found
        await asyncio.sleep(0.2)
    return found


async def test_the_first_two_fixes_fail_and_the_third_heals_in_one_incident(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(temporal_env.client, queue, database_url, redis_url) as kg:
        await register_simulated(kg.pool, "report-service")
        problem = await kg.add_problem(
            ProblemIn(description=REPORTS, category="error", context={"service": "report-service"})
        )
        # the fixes that worked best so far are tried first; today both of them fail
        first = await _fix(kg, problem.id, "Restart the report worker", False, (40, 40))
        second = await _fix(kg, problem.id, "Clear the report cache", False, (30, 31))
        third = await _fix(kg, problem.id, "Shrink the report batch size", True, (2, 10))
        wid = "incident-history-ladder"  # its exported history replays under this id
        result: IncidentStatus = await temporal_env.client.execute_workflow(
            IncidentWorkflow.run, _incident(), id=wid, task_queue=queue
        )
        await export(temporal_env, wid, "incident-history-ladder")
        runs = await _healing_runs(temporal_env, queue)
        stats = {s: await kg.solution_stats(s) for s in (first, second, third)}
    assert result.outcome == "healed", result.summary()
    assert result.plan is not None and result.plan.solution_id == third
    assert [r.outcome for r in result.rungs] == ["failed", "failed"]
    assert {r.solution_id for r in result.rungs} == {first, second}
    assert set(result.excluded_solutions) == {first, second}
    # each rung was a HealingWorkflow of its own
    assert len(runs) == 3 and len(set(runs)) == 3
    assert {r.healing_workflow_id for r in result.rungs} | {result.healing_workflow_id} == set(runs)
    # learning scored every rung: two failures and the success
    assert (stats[first].attempt_count, stats[first].success_count) == (41, 40)
    assert (stats[second].attempt_count, stats[second].success_count) == (32, 30)
    assert (stats[third].attempt_count, stats[third].success_count) == (11, 3)


async def test_a_spent_ladder_escalates_and_says_what_it_tried(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    settings = Settings(notify_urls=f"json://127.0.0.1:{receiver.port}/hook", home=tmp_path)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(
        temporal_env.client, queue, database_url, redis_url, settings=settings
    ) as kg:
        await register_simulated(kg.pool, "report-service")
        problem = await kg.add_problem(
            ProblemIn(description=REPORTS, category="error", context={"service": "report-service"})
        )
        fixes = [
            await _fix(kg, problem.id, f"Report fix number {n}", False, (9 - n, 10))
            for n in range(4)
        ]
        result: IncidentStatus = await temporal_env.client.execute_workflow(
            IncidentWorkflow.run,
            _incident(),
            id=f"incident-ladder-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        acted = await kg.pool.fetchval("SELECT count(*) FROM action_executions")
        for _ in range(50):
            if any("fixes_exhausted" in json.dumps(b) for b in receiver.bodies):
                break
            await asyncio.sleep(0.1)
    # the shipped policy allows 3 plans in one incident: the fourth fix is never tried
    assert len(result.rungs) == 3 and acted == 3
    assert set(result.excluded_solutions) < set(fixes)
    assert result.outcome == "failed" and result.phase == "cooling_down"
    told = [json.dumps(b) for b in receiver.bodies]
    exhausted = [t for t in told if "No known fix worked" in t]
    assert len(exhausted) == 1, told
    assert "3 of 3 plans tried" in exhausted[0]


def test_the_ladder_stops_for_the_plans_the_time_or_the_source() -> None:
    assert ladder_stop(1, 3, 10.0, 1800.0, False) is None
    assert "3 of 3" in (ladder_stop(3, 3, 10.0, 1800.0, False) or "")
    assert "1800 s" in (ladder_stop(1, 3, 1800.0, 1800.0, False) or "")
    assert "resolved" in (ladder_stop(1, 3, 10.0, 1800.0, True) or "")
