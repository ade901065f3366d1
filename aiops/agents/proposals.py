"""What agents propose and how the vote among them came out: the models DiagnosisWorkflow
records and LearningWorkflow scores. No imports from aiops.models (they import these)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aiops.policy.models import ActionSpec


class Proposal(BaseModel):
    agent_id: str
    description: str
    plan: list[ActionSpec] = Field(description="the actions, in order; checked by the policy")
    confidence: float = Field(ge=0.0, le=1.0)
    why: str = ""
    problem_id: str | None = Field(
        default=None, description="the known problem the plan comes from, if any"
    )
    solution_id: str | None = Field(
        default=None, description="the known solution it is, so its own record learns too"
    )


class Ballot(BaseModel):
    proposal: Proposal
    weight: float = Field(description="the agent's track record: Beta posterior mean")
    plan_key: str = Field(description="the same key means the same actions: votes add up")
    score: float = Field(description="weight x confidence: this ballot's part of the vote")


class PlanTally(BaseModel):
    plan_key: str
    description: str
    agents: list[str]
    score: float


class AgentFailure(BaseModel):
    agent_id: str
    error: str


class VoteResult(BaseModel):
    ballots: list[Ballot] = Field(default_factory=list)
    tallies: list[PlanTally] = Field(
        default_factory=list, description="plans by score, the winner first"
    )
    winner: Proposal | None = None
    winning_plan: str | None = None
    failures: list[AgentFailure] = Field(
        default_factory=list, description="agents that raised or timed out: not counted"
    )
    why: str = ""


class AgentLearningResult(BaseModel):
    scored: dict[str, bool] = Field(
        default_factory=dict, description="agent id -> success, for the winning plan's agents"
    )
    failures: list[AgentFailure] = Field(
        default_factory=list, description="agents whose learn raised or timed out"
    )
