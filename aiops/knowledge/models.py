"""The seed's Problem and Solution storage JSON, and what a search returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from aiops.policy.models import ActionSpec

Category = Literal[
    "performance", "error", "security", "configuration", "timeout", "unhealthy", "anomaly"
]
Severity = Literal["low", "medium", "high", "critical"]


class ProblemIn(BaseModel):
    description: str = Field(min_length=1)
    title: str | None = Field(
        default=None, description="a one-line summary; search weighs its words over the body's"
    )
    category: str = "error"
    severity: Severity = "medium"
    error_patterns: list[str] = Field(default_factory=list)
    context: dict[str, Any] = Field(default_factory=dict)
    key: str | None = Field(default=None, description="an external id, e.g. from kg import")
    fingerprint: str | None = Field(default=None, description="default: derived from the text")
    template: str | None = None
    occurrences: int = Field(default=1, ge=1)

    @property
    def service(self) -> str | None:
        value = self.context.get("service")
        return str(value) if value is not None else None


class ProblemRecord(BaseModel):
    id: str
    fingerprint: str
    created: bool
    occurrence_count: int
    similar_to: list[str] = Field(default_factory=list)
    status: Literal["created", "counted", "updated", "unchanged"] = Field(
        default="created",
        description="counted: one more occurrence of a known problem (add_problem); updated or"
        " unchanged: a keyed problem written again (upsert_problem)",
    )


class SolutionIn(BaseModel):
    description: str = Field(min_length=1)
    actions: list[ActionSpec] = Field(default_factory=list)
    prerequisites: list[str] = Field(default_factory=list)
    side_effects: list[str] = Field(default_factory=list)


class SolutionStats(BaseModel):
    solution_id: str
    attempt_count: int
    success_count: int
    success_rate: float
    avg_resolution_time_s: float | None = None


class SolutionHit(BaseModel):
    id: str
    description: str
    actions: list[ActionSpec]
    success_rate: float
    successes: int
    failures: int
    score: float
    why: str


class ProblemView(BaseModel):
    id: str
    key: str | None = None
    title: str | None = None
    description: str
    category: str | None = None
    severity: str | None = None
    service: str | None = None
    occurrence_count: int = 1
    last_seen: datetime | None = None


class SearchHit(BaseModel):
    problem: ProblemView
    similarity: float = Field(description="fused relevance, 0..1")
    semantic: float = Field(description="embedding cosine, best over the problem's windows")
    lexical: float = Field(description="share of the query's IDF weight the problem matches")
    bm25: float = Field(default=0.0, description="BM25F score over the query's own, 0..1")
    why: str
    solutions: list[SolutionHit]
