"""The fingerprinter's boundary types: its settings, its answer, and its saved state."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STATE_VERSION = 1


class FingerprintConfig(BaseModel):
    """How eagerly messages join an existing group. One setting for every source of logs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_span: int = Field(
        default=5, ge=1, le=16, description="longest run of tokens one wildcard may stand for"
    )
    max_absorbed_words: int = Field(
        default=1,
        ge=0,
        le=1,
        description="plain words a wildcard may stand for when a message joins a group",
    )
    min_shared_tokens: int = Field(
        default=2,
        ge=0,
        description="constant tokens a message must share with a group it joins, unless equal",
    )
    max_remembered_keys: int = Field(
        default=20_000,
        ge=0,
        description="masked forms remembered for an exact lookup (least recently seen go first)",
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
