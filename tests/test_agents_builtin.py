"""The built-in agents delegate: healing's act is a HealingWorkflow start under the policy,
monitor's observe is the probe's verdict and the anomaly detector, learning's learn is the
knowledge graph's keyed outcome (the same key as LearningWorkflow's, so it counts once)."""

from __future__ import annotations

import uuid

from aiops_worker import EMBEDDER

from aiops.agents.builtin import HealingAgent, LearningAgent, MonitorAgent
from aiops.agents.models import AgentContext, AgentOutcome, Proposal
from aiops.db.pool import create_pool
from aiops.events.envelope import MONITOR_SOURCE, Event
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.models.healing import HealingInput
from aiops.monitor.anomaly import AnomalyDetector, DetectorConfig
from aiops.policy.models import ActionSpec


async def test_healing_agent_describes_the_healing_workflow() -> None:
    proposal = Proposal(
        agent_id="x",
        description="Restart it",
        plan=[ActionSpec(action_type="restart", target="{service}")],
        confidence=0.7,
        why="it is down",
    )
    action = await HealingAgent().act(
        AgentContext(incident_id="incident-1", text="down", service="api"), proposal
    )
    assert action.workflow == "HealingWorkflow"
    healing = HealingInput.model_validate(action.input)
    assert healing.incident_id == "incident-1"
    assert [(p.step, p.action.target) for p in healing.plan.actions] == [("1", "api")]
    assert "restart" in healing.policy.allowed


async def test_monitor_agent_reads_probes_and_metrics() -> None:
    agent = MonitorAgent(AnomalyDetector(DetectorConfig(warmup=5)))
    probe = Event(event_type="ServiceUnhealthy", source=MONITOR_SOURCE, service="api")
    seen = await agent.observe(probe)
    assert seen is not None and (seen.kind, seen.service) == ("unhealthy", "api")
    kinds = []
    for i in range(40):
        value = 100.0 + (i % 3) if i < 35 else 5000.0
        metric = Event(
            event_type="MetricReport",
            source="api",
            payload={"metric": "latency_ms", "value": value},
        )
        found = await agent.observe(metric)
        if found is not None:
            kinds.append(found.kind)
    assert kinds[:1] == ["anomaly"]


async def test_learning_agent_counts_once_with_the_workflows_key(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=2)
    try:
        kg = KnowledgeGraph(pool, EMBEDDER)
        problem = await kg.add_problem(
            ProblemIn(description="queue stuck", category="error", severity="high")
        )
        solution = await kg.add_solution(
            problem.id,
            SolutionIn(
                description="Restart the consumer",
                actions=[ActionSpec(action_type="restart", target="consumer")],
            ),
        )
        run = f"incident-1-learning-{uuid.uuid4().hex[:8]}"
        agent = LearningAgent(kg)
        outcome = AgentOutcome(
            incident_id="incident-1", key=run, outcome="healed", solution_id=solution
        )
        await agent.learn(outcome)
        await agent.learn(outcome)  # a retry
        # what LearningWorkflow's record_solution_outcome does for the same run
        await kg.record_outcome_once(f"outcome:{run}", solution, True, None)
        await agent.learn(outcome.model_copy(update={"outcome": "escalated", "key": "other"}))
        stats = await kg.solution_stats(solution)
    finally:
        await pool.close()
    assert (stats.attempt_count, stats.success_count) == (1, 1)
