"""The boundary of an agent: what it is shown, what it answers, what it learns from."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from aiops.agents.proposals import AgentFailure, AgentLearningResult, Ballot, Proposal
from aiops.models.diagnosis import Candidate
from aiops.registry.agents import AgentHealth

__all__ = [
    "AgentAction",
    "AgentContext",
    "AgentFailure",
    "AgentLearningRequest",
    "AgentLearningResult",
    "AgentObservation",
    "AgentOutcome",
    "AgentStatus",
    "Proposal",
    "ProposalCollection",
    "ProposalRequest",
    "TrackRecord",
]


class AgentContext(BaseModel):
    """An incident as an agent sees it: masked text, never the raw events."""

    incident_id: str
    text: str = Field(description="what went wrong, masked for PII and secrets")
    service: str | None = None
    category: str | None = None
    severity: str | None = None
    candidates: list[Candidate] = Field(
        default_factory=list, description="known problems and fixes the knowledge graph found"
    )
    proposals: list[Proposal] = Field(
        default_factory=list, description="what the other agents proposed so far (collaborate)"
    )


class AgentObservation(BaseModel):
    """What an agent noticed in an event (observe): a signal worth an incident, or not."""

    agent_id: str
    kind: str = Field(description="anomaly, recovered, unhealthy, ...")
    service: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class AgentAction(BaseModel):
    """What acting on a proposal means for an agent: a workflow to start, or nothing."""

    agent_id: str
    workflow: str | None = Field(default=None, description="e.g. HealingWorkflow")
    input: dict[str, Any] = Field(default_factory=dict, description="the workflow's input")
    description: str = ""


class AgentOutcome(BaseModel):
    """How an incident ended, from one agent's point of view (learn)."""

    incident_id: str
    key: str = Field(description="idempotency key: the learning run; a retry learns nothing new")
    outcome: str = Field(description="healed, compensated, failed, escalated, ...")
    proposal: Proposal | None = Field(default=None, description="what this agent proposed")
    chosen: bool = Field(default=False, description="its plan was the one carried out")
    success: bool | None = Field(
        default=None, description="true healed, false failed or rolled back; None: not scored"
    )
    solution_id: str | None = None
    resolution_time_s: float | None = None


class AgentStatus(BaseModel):
    agent_id: str
    health: AgentHealth
    detail: str = ""


class TrackRecord(BaseModel):
    """Proposals of an agent that were chosen and healed (successes) or failed."""

    agent_id: str
    successes: int = 0
    failures: int = 0

    @property
    def weight(self) -> float:
        """Posterior mean of Beta(1 + successes, 1 + failures): 0.5 with no record."""
        return (1 + self.successes) / (2 + self.successes + self.failures)


class ProposalRequest(BaseModel):
    context: AgentContext
    timeout_s: float | None = Field(
        default=None, description="per-agent limit; the worker's setting when None"
    )


class ProposalCollection(BaseModel):
    proposals: list[Proposal] = Field(default_factory=list)
    weights: dict[str, float] = Field(
        default_factory=dict, description="agent id -> track record weight, proposers and peers"
    )
    failures: list[AgentFailure] = Field(default_factory=list)


class AgentLearningRequest(BaseModel):
    incident_id: str
    outcome: str
    ballots: list[Ballot] = Field(description="every proposal of the diagnosis' vote")
    winning_plan: str | None = Field(description="the plan carried out (its plan_key)")
    solution_id: str | None = None
    resolution_time_s: float | None = None
