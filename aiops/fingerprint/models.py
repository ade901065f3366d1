"""The fingerprinter's boundary types: its settings, its answer, and its saved state."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STATE_VERSION = 2


class FingerprintConfig(BaseModel):
    """How eagerly lines join an existing template. One setting for every source of logs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    similarity: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description=(
            "share of a template's words a line of the same shape must repeat to join it; "
            "the words it may differ in grow with the template's length (0 for short ones)"
        ),
    )
    prefix_tokens: int = Field(
        default=0,
        ge=0,
        le=2,
        description="leading tokens that must be equal for two lines to be one event",
    )
    slot_values: int = Field(
        default=0,
        ge=0,
        description=(
            "different words one position of otherwise equal templates must take before it "
            "is data and they merge (0: never)"
        ),
    )
    max_templates_per_scope: int = Field(
        default=5_000,
        ge=1,
        description=(
            "templates one (service, category) may have; past it a new line shape goes to the "
            "scope's one overflow template (logged), so a storm of never-seen shapes stays cheap"
        ),
    )
    max_remembered_keys: int = Field(
        default=20_000,
        ge=0,
        description="line shapes remembered for an exact lookup (least recently seen go first)",
    )
    fingerprint_hex_chars: int = Field(default=16, ge=8, le=64)


class FingerprintResult(BaseModel):
    """The group a message belongs to: a stable id, its template now, and its size so far."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str
    template: str
    cluster_size: int


class TemplateToken(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    variable: bool
    space_before: bool


class ClusterState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fingerprint: str
    service: str
    category: str
    first_key: list[str]
    tokens: list[TemplateToken]
    size: int = Field(ge=1)
    merged_into: str | None = Field(
        default=None, description="the fingerprint this template was merged into, if it was"
    )


class RememberedKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: int = Field(ge=0, description="index into FingerprintState.clusters")
    key: list[str]


class FingerprintState(BaseModel):
    """Everything needed to resume: restored, a fingerprinter gives known groups the same ids."""

    model_config = ConfigDict(extra="forbid")

    version: int = STATE_VERSION
    config: FingerprintConfig = FingerprintConfig()
    clusters: list[ClusterState] = []
    remembered: list[RememberedKey] = Field(
        default=[], description="exact-lookup keys, least recently seen first"
    )
