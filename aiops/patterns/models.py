"""The seed's Pattern storage JSON as pydantic models.

A pattern is stored as a `knowledge_nodes` row of type `pattern`; its `data` column is
`Pattern.model_dump(mode="json")`. Patterns come from two places: written by people (or
shipped), and mined from recurring problems by `KnowledgeGraph.extract_patterns`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from aiops.policy.models import ActionSpec


class PatternType(StrEnum):
    ERROR = "error"
    PERFORMANCE = "performance"
    SECURITY = "security"
    BEHAVIORAL = "behavioral"


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    GREATER_THAN = "greater_than"
    LESS_THAN = "less_than"
    GTE = "gte"
    LTE = "lte"
    CONTAINS = "contains"
    REGEX = "regex"
    IN = "in"
    EXISTS = "exists"


class MatchingRule(BaseModel):
    field: str = Field(description="a dot-path into the event, e.g. payload.memory_usage")
    operator: Operator
    value: Any = None


class PatternStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class Pattern(BaseModel):
    pattern_type: PatternType = PatternType.ERROR
    description: str = Field(min_length=1)
    matching_rules: list[MatchingRule] = Field(default_factory=list)
    actions: list[ActionSpec] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    success_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    occurrences: int = Field(default=0, ge=0)
    last_updated: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # Beyond the seed's JSON: where it applies and where it came from.
    event_types: list[str] = Field(
        default_factory=list, description="event types it applies to; empty means any"
    )
    service: str | None = None
    template: str | None = Field(default=None, description="the fingerprint template, if mined")
    severity: str | None = Field(default=None, description="problem severity when it matches")
    status: PatternStatus = PatternStatus.ACTIVE
    attempt_count: int = Field(default=0, ge=0)
    success_count: int = Field(default=0, ge=0)
    # Additive: lineage and retirement, written by the pattern library's evolver.
    evolved_from: str | None = Field(
        default=None, description="id of the pattern this one evolved from"
    )
    retired_reason: str | None = None
