"""Inputs and outputs of DiagnosisWorkflow."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from aiops.agents.proposals import VoteResult
from aiops.models.healing import HealingPlan
from aiops.policy.models import ActionSpec


class DiagnosisInput(BaseModel):
    incident_id: str
    text: str = Field(description="what went wrong, raw; masked before it leaves the worker")
    service: str | None = None
    category: str | None = None
    severity: str | None = None
    limit: int = 5
    min_similarity: float = Field(
        default=0.45, description="below this, the best match does not count as known"
    )
    closeness: float = Field(
        default=0.08, description="candidates this close to the best take part in sampling"
    )
    exclude_solutions: list[str] = Field(
        default_factory=list, description="solutions that already failed for this incident"
    )


class Candidate(BaseModel):
    problem_id: str
    problem_description: str
    problem_service: str | None = Field(
        default=None, description="the service the known problem was recorded for, if any"
    )
    similarity: float
    solution_id: str
    solution_description: str
    actions: list[ActionSpec]
    successes: int = 0
    failures: int = 0
    why: str = ""


class CandidateSearch(BaseModel):
    masked_text: str
    candidates: list[Candidate]
    llm_configured: bool = Field(
        default=False, description="the worker can write a root-cause note (AIOPS_LLM_MODEL)"
    )
    agents_configured: bool = Field(
        default=False,
        description="custom agents are installed: the diagnosis asks them and votes",
    )


class Choice(BaseModel):
    candidate: Candidate
    sampled_success: float
    score: float
    why: str


class Diagnosis(BaseModel):
    outcome: Literal["matched", "unknown"]
    masked_text: str
    candidates: list[Candidate] = Field(default_factory=list)
    chosen: Choice | None = None
    plan: HealingPlan | None = None
    why: str
    root_cause_note: str | None = None
    vote: VoteResult | None = Field(
        default=None,
        description="the agents' proposals, weights and vote; None when only the built-in "
        "diagnostic agent runs (no custom agents)",
    )
