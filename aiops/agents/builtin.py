"""The built-in monitor, healing and learning agents (the diagnostic one is in
diagnostic.py). Each delegates to the piece that does the work; none re-implements it."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiops.agents.diagnostic import DiagnosticAgent
from aiops.agents.models import (
    AgentAction,
    AgentContext,
    AgentObservation,
    AgentOutcome,
    Proposal,
)
from aiops.agents.protocol import BaseAgent, UniversalAgent
from aiops.agents.vote import plan_from_proposal
from aiops.events.envelope import Event, EventType
from aiops.knowledge import KnowledgeGraph
from aiops.models.healing import HealingInput
from aiops.monitor.anomaly import AnomalyDetector, metric_samples
from aiops.monitor.models import MONITOR_SOURCE
from aiops.policy import load_policy

MONITOR_AGENT: Final = "aiops.monitor"
HEALING_AGENT: Final = "aiops.healing"
LEARNING_AGENT: Final = "aiops.learning"
VERDICTS: Final = frozenset({"healed", "compensated", "failed"})


class MonitorAgent(BaseAgent):
    """Reads events as `aiops monitor` does: a failed health probe is an unhealthy service,
    metric samples go through the anomaly detector (aiops.monitor.anomaly)."""

    agent_id = MONITOR_AGENT
    kind = "monitor"

    def __init__(self, detector: AnomalyDetector | None = None) -> None:
        self.capabilities = ["monitor", "observe"]
        self.detector = detector or AnomalyDetector()

    async def observe(self, event: Event) -> AgentObservation | None:
        service = event.service or event.source
        if event.event_type == EventType.SERVICE_UNHEALTHY and event.source == MONITOR_SOURCE:
            return AgentObservation(
                agent_id=self.agent_id, kind="unhealthy", service=service, detail=event.payload
            )
        for metric, value in metric_samples(event):
            signal = self.detector.observe(service, metric, value)
            if signal is not None:
                return AgentObservation(
                    agent_id=self.agent_id,
                    kind=signal.kind,
                    service=service,
                    detail={"metric": metric, "value": value, "z": signal.z},
                )
        return None


class HealingAgent(BaseAgent):
    """Acting on a plan is starting HealingWorkflow with it under the policy in force: this
    agent says so (the incident workflow starts it); it runs no action itself."""

    agent_id = HEALING_AGENT
    kind = "healing"

    def __init__(self, policy_file: Path | None = None) -> None:
        self.capabilities = ["heal"]
        self._policy_file = policy_file

    async def act(self, context: AgentContext, proposal: Proposal) -> AgentAction:
        plan = plan_from_proposal(proposal, context.service, proposal.why)
        healing = HealingInput(
            incident_id=context.incident_id, plan=plan, policy=load_policy(self._policy_file)
        )
        return AgentAction(
            agent_id=self.agent_id,
            workflow="HealingWorkflow",
            input=healing.model_dump(mode="json"),
            description=f"heal {context.service or 'the service'} by {plan.description!r}",
        )


class LearningAgent(BaseAgent):
    """An outcome updates the chosen solution's posterior in the knowledge graph, keyed as
    LearningWorkflow's record_solution_outcome is: both together still count once."""

    agent_id = LEARNING_AGENT
    kind = "learning"

    def __init__(self, kg: KnowledgeGraph) -> None:
        self.capabilities = ["learn"]
        self._kg = kg

    async def learn(self, outcome: AgentOutcome) -> None:
        if outcome.solution_id is None or outcome.outcome not in VERDICTS:
            return
        await self._kg.record_outcome_once(
            f"outcome:{outcome.key}",
            outcome.solution_id,
            outcome.outcome == "healed",
            outcome.resolution_time_s,
        )


def builtin_agents(kg: KnowledgeGraph, policy_file: Path | None = None) -> list[UniversalAgent]:
    return [DiagnosticAgent(), HealingAgent(policy_file), LearningAgent(kg), MonitorAgent()]


BUILTIN_IDS: Final = frozenset(
    {DiagnosticAgent.agent_id, HEALING_AGENT, LEARNING_AGENT, MONITOR_AGENT}
)
