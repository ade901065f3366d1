"""The policy's data: actions as the seed's solution JSON has them, the rules, the verdict."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ActionClass = Literal["restart", "config_update", "cache_clear", "scale", "log_analysis", "execute"]
ALLOWED_CLASSES: tuple[ActionClass, ...] = (
    "restart",
    "config_update",
    "cache_clear",
    "scale",
    "log_analysis",
    "execute",
)
# start and stop are restarts in halves: the same class, the same limits
ACTION_CLASS_OF_TYPE: dict[str, str] = {
    "restart": "restart",
    "start": "restart",
    "stop": "restart",
    "config_update": "config_update",
    "cache_clear": "cache_clear",
    "scale": "scale",
    "log_analysis": "log_analysis",
    "execute": "execute",
}


class ActionSpec(BaseModel):
    """One action of a solution: {"action_type", "target", "parameters", "order"}."""

    action_type: str = Field(min_length=1)
    target: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    order: int = 1


class RateLimit(BaseModel):
    max_actions: int = Field(default=5, ge=1, description="per target within the window")
    window_s: float = Field(default=600.0, gt=0)


class BlastRadius(BaseModel):
    max_concurrent_remediations: int = Field(default=1, ge=1, description="per service")


class CriticalRules(BaseModel):
    action_types: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)
    critical_services: bool = Field(
        default=True, description="every action on a service registered critical needs approval"
    )


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed: list[ActionClass] = Field(default_factory=lambda: list(ALLOWED_CLASSES))
    execute_allow: dict[str, list[str]] = Field(
        default_factory=dict,
        description="target kind -> commands `execute` may run, e.g. redis: [MEMORY PURGE]",
    )
    critical: CriticalRules = Field(default_factory=CriticalRules)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)
    approval_timeout_s: float = Field(default=900.0, gt=0)
    # the escalation ladder: after a failed or rolled-back plan, the next known fix is tried
    # in the same incident, up to this many plans and within this time
    max_plans_per_incident: int = Field(default=3, ge=1, le=10)
    ladder_budget_s: float = Field(default=1800.0, gt=0)


class PolicyContext(BaseModel):
    """What the decision needs from the world, fetched by an activity."""

    service_critical: bool = False
    recent_actions_on_target: int = 0
    concurrent_remediations: int = 0
    target_kind: str | None = Field(
        default=None, description="redis for a redis:// service: the execute_allow key"
    )
    mode: Literal["act", "approve-all", "shadow"] = Field(
        default="act", description="the service's operating mode (aiops mode set)"
    )


class PolicyDecision(BaseModel):
    verdict: Literal["allow", "needs_approval", "deny"]
    decision_id: str | None = Field(
        default=None, description="unique per step and run: what a signed approval names"
    )
    action_class: str
    reason: str
    rule: str
    approval_timeout_s: float | None = None
