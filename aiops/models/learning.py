"""Inputs and outputs of LearningWorkflow."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aiops.knowledge.models import SolutionStats

__all__ = [
    "InsightRequest",
    "LearningInput",
    "LearningResult",
    "OutcomeEventRequest",
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
    before: SolutionStats | None = None
    after: SolutionStats | None = None
    insight_id: str | None = None
    outcome_event_id: str | None = None
