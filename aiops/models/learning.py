"""Inputs and outputs of LearningWorkflow."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aiops.agents.proposals import AgentLearningResult, Ballot
from aiops.knowledge.models import SolutionStats

__all__ = [
    "InsightRequest",
    "LearningInput",
    "LearningResult",
    "OutcomeEventRequest",
    "PatternOutcome",
    "PatternOutcomeRequest",
    "SolutionStats",
]


class LearningInput(BaseModel):
    incident_id: str
    outcome: str = Field(description="the healing outcome: healed, compensated, escalated...")
    problem_id: str | None = None
    solution_id: str | None = None
    service: str | None = None
    resolution_time_s: float | None = None
    causation_event_id: str | None = Field(
        default=None, description="the event that opened the incident; the outcome event's cause"
    )
    correlation_id: str | None = None
    summary: str = ""
    ballots: list[Ballot] = Field(
        default_factory=list, description="the diagnosis' vote: the agents to score and teach"
    )
    winning_plan: str | None = Field(default=None, description="the plan_key carried out")
    pattern_id: str | None = Field(
        default=None, description="the pattern whose match opened the incident, if any"
    )


class PatternOutcomeRequest(BaseModel):
    pattern_id: str
    incident_id: str
    success: bool
    solution_id: str | None = None


class PatternOutcome(BaseModel):
    pattern_id: str
    recorded: bool = Field(description="false: this incident's outcome was counted before")
    attempt_count: int
    success_rate: float
    evolved_into: list[str] = Field(
        default_factory=list, description="new patterns, when this outcome made it evolve"
    )


class InsightRequest(BaseModel):
    incident_id: str
    problem_id: str | None
    solution_id: str | None
    outcome: str
    summary: str


class OutcomeEventRequest(BaseModel):
    incident_id: str
    outcome: str
    service: str | None
    solution_id: str | None
    causation_event_id: str | None
    correlation_id: str | None
    success_rate_before: float | None = None
    success_rate_after: float | None = None


class LearningResult(BaseModel):
    agents: AgentLearningResult | None = None
    pattern: PatternOutcome | None = None
    before: SolutionStats | None = None
    after: SolutionStats | None = None
    insight_id: str | None = None
    outcome_event_id: str | None = None
