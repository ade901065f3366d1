"""Agents collaborating in real incidents (real Temporal, PostgreSQL, Redis): a custom
agent's proposal chosen by the vote and healed, track records updated from the outcome, a
broken agent left out and reported unhealthy without breaking the diagnosis, and the
outcome of an incident a pattern opened counted for that pattern."""

from __future__ import annotations

import asyncio
import uuid

from aiops_worker import aiops_worker
from known_problems import register_simulated
from temporalio.testing import WorkflowEnvironment

from aiops.agents.models import AgentContext, AgentOutcome, Proposal
from aiops.agents.protocol import BaseAgent
from aiops.agents.track import TrackRecords
from aiops.agents.vote import DIAGNOSTIC_AGENT
from aiops.db.pool import create_pool
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.incident import IncidentInput, IncidentStatus, ProblemCategory
from aiops.patterns.learning import PatternTracker
from aiops.patterns.models import Pattern
from aiops.patterns.store import PatternLibrary
from aiops.policy.models import ActionSpec
from aiops.registry.agents import AgentRegistry
from workflows.incident import IncidentWorkflow

SIM: dict[str, float] = {}  # import-service is registered for the simulated adapter


class PlanAgent(BaseAgent):
    """Proposes one fixed plan for timeouts and remembers what it learned."""

    kind = "diagnostic"

    def __init__(self, agent_id: str, success_probability: float, confidence: float) -> None:
        self.agent_id = agent_id
        self.capabilities = ["diagnose:timeout"]
        self.success_probability = success_probability
        self.confidence = confidence
        self.contexts: list[AgentContext] = []
        self.outcomes: list[AgentOutcome] = []

    async def analyze(self, context: AgentContext) -> Proposal | None:
        self.contexts.append(context)
        return Proposal(
            agent_id=self.agent_id,
            description=f"{self.agent_id}: clear the cache",
            plan=[
                ActionSpec(
                    action_type="cache_clear",
                    target="{service}",
                    parameters={**SIM, "success_probability": self.success_probability},
                )
            ],
            confidence=self.confidence,
            why="the cache is what grows here",
        )

    async def learn(self, outcome: AgentOutcome) -> None:
        self.outcomes.append(outcome)


class Raises(BaseAgent):
    agent_id = "raises"
    capabilities = ["diagnose"]

    async def analyze(self, context: AgentContext) -> Proposal | None:
        raise RuntimeError("model file missing")

    async def learn(self, outcome: AgentOutcome) -> None:
        raise RuntimeError("cannot learn either")


class Sleeps(BaseAgent):
    agent_id = "sleeps"
    capabilities = ["diagnose:timeout"]

    async def analyze(self, context: AgentContext) -> Proposal | None:
        await asyncio.sleep(30)
        return None


async def _seed(kg: KnowledgeGraph) -> str:
    await register_simulated(kg.pool, "import-service", config_keys=("batch",))
    problem = await kg.add_problem(
        ProblemIn(
            description="Import requests time out with large bookmark files",
            category="timeout",
            severity="high",
            error_patterns=["import timed out", "ServiceTimeout"],
            context={"service": "import-service"},
        )
    )
    return await kg.add_solution(
        problem.id,
        SolutionIn(
            description="Lower the import batch size",
            actions=[
                ActionSpec(
                    action_type="config_update",
                    target="import-service",
                    parameters={**SIM, "success_probability": 1.0, "key": "batch", "value": 9},
                )
            ],
        ),
    )


async def _incident(
    env: WorkflowEnvironment, queue: str, pattern_id: str | None = None
) -> IncidentStatus:
    return await env.client.execute_workflow(
        IncidentWorkflow.run,
        IncidentInput(
            event_type="ServiceTimeout",
            source="import-service",
            service="import-service",
            category=ProblemCategory.TIMEOUT,  # as the router's detection says
            payload={"message": "bookmark import timed out after 30s on a large file"},
            cool_down_s=1,
            pattern_id=pattern_id,
        ),
        id=f"incident-agents-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
    )


async def test_a_custom_agents_plan_wins_heals_and_scores(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, max_size=2)
    tracks = TrackRecords(pool)
    # a good record so far: weight 5/6 against the built-in's 1/2
    for i in range(4):
        await tracks.record("cache-agent", f"earlier-{i}", True)
    agent = PlanAgent("cache-agent", success_probability=1.0, confidence=0.9)
    try:
        async with aiops_worker(
            temporal_env.client, queue, database_url, redis_url, agents=[agent]
        ) as kg:
            solution_id = await _seed(kg)
            result = await _incident(temporal_env, queue)
            stats = await kg.solution_stats(solution_id)
            rows = {r.id: r for r in await AgentRegistry(pool).discover()}
        records = await tracks.get(["cache-agent", DIAGNOSTIC_AGENT])
    finally:
        await pool.close()

    diagnosis = result.diagnosis
    assert diagnosis is not None and diagnosis.vote is not None
    vote = diagnosis.vote
    assert vote.winner is not None and vote.winner.agent_id == "cache-agent", diagnosis.why
    assert {b.proposal.agent_id for b in vote.ballots} == {"cache-agent", DIAGNOSTIC_AGENT}
    assert {b.proposal.agent_id: round(b.weight, 3) for b in vote.ballots} == {
        "cache-agent": round(5 / 6, 3),
        DIAGNOSTIC_AGENT: 0.5,
    }
    assert diagnosis.why.startswith("cache-agent's plan won the vote")
    assert diagnosis.chosen is None  # the built-in's draw did not win
    # the agent saw the masked incident and the built-in's proposal (collaborate)
    assert agent.contexts[0].category == "timeout"
    assert [p.agent_id for p in agent.contexts[0].proposals] == [DIAGNOSTIC_AGENT]
    # healed by the custom plan, its {service} filled in, through the policy
    assert result.outcome == "healed", result.healing_result
    assert result.healing_result is not None
    [step] = result.healing_result.steps
    assert (step.action.action_type, step.action.target) == ("cache_clear", "import-service")
    # scored: the proposer of the plan carried out, not the built-in whose plan lost
    assert result.learning is not None and result.learning.agents is not None
    assert result.learning.agents.scored == {"cache-agent": True}
    assert (records["cache-agent"].successes, records["cache-agent"].failures) == (5, 0)
    assert (records[DIAGNOSTIC_AGENT].successes, records[DIAGNOSTIC_AGENT].failures) == (0, 0)
    [outcome] = agent.outcomes
    assert outcome.chosen and outcome.success is True and outcome.outcome == "healed"
    # the known solution was not what ran: its record is untouched
    assert stats.attempt_count == 0
    # agents registered with their track record in the registry
    assert rows["cache-agent@test"].health == "healthy"
    assert {"aiops.diagnostic@test", "aiops.healing@test", "aiops.learning@test"} <= set(rows)


async def test_a_failed_plan_counts_against_its_proposers_only(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, max_size=2)
    tracks = TrackRecords(pool)
    for i in range(4):
        await tracks.record("confident", f"earlier-{i}", True)
    # two agents agree on a plan that fails; a third proposes something else and loses
    confident = PlanAgent("confident", success_probability=0.0, confidence=0.9)
    echo = PlanAgent("echo", success_probability=0.0, confidence=0.6)
    other = PlanAgent("other", success_probability=1.0, confidence=0.1)
    other.capabilities = ["diagnose"]

    async def config_plan(context: AgentContext) -> Proposal:
        return Proposal(
            agent_id="other",
            description="other: change the config",
            plan=[ActionSpec(action_type="config_update", target="import-service")],
            confidence=0.1,
        )

    other.analyze = config_plan  # type: ignore[method-assign]
    try:
        async with aiops_worker(
            temporal_env.client, queue, database_url, redis_url, agents=[confident, echo, other]
        ) as kg:
            await _seed(kg)
            result = await _incident(temporal_env, queue)
        records = await tracks.get(["confident", "echo", "other", DIAGNOSTIC_AGENT])
    finally:
        await pool.close()
    assert result.diagnosis is not None and result.diagnosis.vote is not None
    winning = result.diagnosis.vote.tallies[0]
    assert sorted(winning.agents) == ["confident", "echo"]
    assert result.outcome in ("failed", "compensated")
    assert result.learning is not None and result.learning.agents is not None
    assert result.learning.agents.scored == {"confident": False, "echo": False}
    assert (records["confident"].successes, records["confident"].failures) == (4, 1)
    assert (records["echo"].successes, records["echo"].failures) == (0, 1)
    assert (records["other"].successes, records["other"].failures) == (0, 0)
    assert records[DIAGNOSTIC_AGENT].failures == 0
    assert other.outcomes[0].chosen is False and other.outcomes[0].success is None


async def test_broken_agents_do_not_break_diagnosis_and_are_reported_unhealthy(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, max_size=2)
    try:
        async with aiops_worker(
            temporal_env.client,
            queue,
            database_url,
            redis_url,
            agents=[Raises(), Sleeps()],
            agent_timeout_s=0.5,
        ) as kg:
            solution_id = await _seed(kg)
            result = await _incident(temporal_env, queue)
            rows = {r.id: r for r in await AgentRegistry(pool).discover()}
    finally:
        await pool.close()
    diagnosis = result.diagnosis
    assert diagnosis is not None and diagnosis.vote is not None
    # today's choice, as if the broken agents were not installed
    assert diagnosis.chosen is not None and diagnosis.chosen.candidate.solution_id == solution_id
    assert result.outcome == "healed"
    failures = {f.agent_id: f.error for f in diagnosis.vote.failures}
    assert "raised RuntimeError('model file missing')" in failures["raises"]
    assert "timed out after 0.5s" in failures["sleeps"]
    assert "not counted: " in diagnosis.why
    assert rows["raises@test"].health == "unhealthy"
    assert rows["sleeps@test"].health == "unhealthy"
    assert "timed out" in str(rows["sleeps@test"].metadata.get("detail"))
    # its learn raising does not stop learning either
    assert result.learning is not None and result.learning.agents is not None
    assert [f.agent_id for f in result.learning.agents.failures] == ["raises"]
    assert result.learning.insight_id is not None


async def test_an_incident_from_a_pattern_counts_for_the_pattern(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, max_size=2)
    try:
        added = await PatternLibrary(pool).add(
            Pattern.model_validate(
                {
                    "pattern_type": "performance",
                    "description": "imports time out",
                    "matching_rules": [
                        {"field": "message", "operator": "contains", "value": "timed out"}
                    ],
                    "actions": [{"action_type": "cache_clear", "target": "{service}"}],
                }
            )
        )
        async with aiops_worker(temporal_env.client, queue, database_url, redis_url) as kg:
            await _seed(kg)
            result = await _incident(temporal_env, queue, pattern_id=added.id)
        stats = await PatternTracker(pool).stats(added.id)
    finally:
        await pool.close()
    assert result.pattern_id == added.id and result.outcome == "healed"
    assert result.learning is not None and result.learning.pattern is not None
    assert result.learning.pattern.recorded and result.learning.pattern.evolved_into == []
    assert (stats.attempt_count, stats.success_count) == (1, 1)
    # no custom agents: no vote, today's diagnosis
    assert result.diagnosis is not None and result.diagnosis.vote is None
