"""Choosing a fix: Thompson sampling keeps learning, and knowledge recorded for another
service is a hint, never a plan that acts outside the incident's service."""

from __future__ import annotations

import random
import uuid

from aiops_worker import aiops_worker
from temporalio.testing import WorkflowEnvironment

from aiops.diagnosis import choose_solution, plan_for
from aiops.diagnosis.choose import applicable, applies_to
from aiops.knowledge import ProblemIn, SolutionIn
from aiops.models.diagnosis import Candidate, DiagnosisInput
from aiops.policy.models import ActionSpec
from workflows.diagnosis import DiagnosisWorkflow


def _candidate(
    target: str, service: str | None, successes: int = 0, failures: int = 0, sim: float = 0.8
) -> Candidate:
    return Candidate(
        problem_id=str(uuid.uuid4()),
        problem_description="disk full",
        problem_service=service,
        similarity=sim,
        solution_id=str(uuid.uuid4()),
        solution_description=f"fix on {target}",
        actions=[ActionSpec(action_type="cache_clear", target=target)],
        successes=successes,
        failures=failures,
    )


def test_fixes_for_another_service_do_not_apply() -> None:
    assert applies_to(_candidate("bookmark-api", "bookmark-api"), "bookmark-api")
    assert not applies_to(_candidate("log-collector", "log-collector"), "bookmark-api")
    # generic runbooks: written without a service, or aimed at the incident's service
    assert applies_to(_candidate("redis", None), "bookmark-api")
    assert applies_to(_candidate("{service}", "log-collector"), "bookmark-api")
    # an incident without a service takes what it finds
    assert applies_to(_candidate("log-collector", "log-collector"), None)


def test_placeholder_target_becomes_the_incident_service() -> None:
    picked = choose_solution([_candidate("{service}", None)], random.Random(1), 0.08)
    assert picked is not None
    plan = plan_for(picked[0], "bookmark-api")
    assert [p.action.target for p in plan.actions] == ["bookmark-api"]


def test_thompson_sampling_tries_the_untried_sometimes_and_the_proven_mostly() -> None:
    proven = _candidate("svc", "svc", successes=30, failures=2)
    untried = _candidate("svc", "svc")
    rng = random.Random(7)
    wins = 0
    for _ in range(400):
        picked = choose_solution([proven, untried], rng, 0.08)
        assert picked is not None
        wins += picked[0].candidate.solution_id == proven.solution_id
    assert 300 < wins < 400  # mostly the proven fix, but the new one gets tried
    far = _candidate("svc", "svc", sim=0.5)  # outside the closeness band: never drawn
    picked = choose_solution([proven, far], rng, 0.08)
    assert picked is not None and len(picked[1]) == 1


async def test_other_service_knowledge_escalates_with_a_hint(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with aiops_worker(temporal_env.client, queue, database_url, redis_url) as kg:
        problem = await kg.add_problem(
            ProblemIn(
                description="Disk full on the data volume: writes fail, no space left on device",
                context={"service": "log-collector"},
            )
        )
        await kg.add_solution(
            problem.id,
            SolutionIn(
                description="Rotate and compress the collector's buffers",
                actions=[ActionSpec(action_type="cache_clear", target="log-collector")],
            ),
        )
        diagnosis = await temporal_env.client.execute_workflow(
            DiagnosisWorkflow.run,
            DiagnosisInput(
                incident_id="i-1",
                text="request failed: no space left on device while writing",
                service="bookmark-api",
            ),
            id=f"diag-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
    assert diagnosis.outcome == "unknown" and diagnosis.plan is None
    assert diagnosis.candidates and diagnosis.candidates[0].problem_service == "log-collector"
    assert "log-collector" in diagnosis.why and "not bookmark-api" in diagnosis.why


def test_a_much_better_match_elsewhere_means_ours_is_a_guess() -> None:
    ours = _candidate("bookmark-api", "bookmark-api", sim=0.53)
    theirs = _candidate("log-collector", "log-collector", sim=0.78)
    assert applicable([ours, theirs], "bookmark-api", 0.08) == []
    close = _candidate("bookmark-api", "bookmark-api", sim=0.74)
    assert applicable([close, theirs], "bookmark-api", 0.08) == [close]
    assert applicable([ours], "bookmark-api", 0.08) == [ours]
