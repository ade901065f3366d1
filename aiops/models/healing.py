"""Inputs and outputs of HealingWorkflow: what an operator sees in the Web UI and `status`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from aiops.actions.base import ActionOutcome
from aiops.policy.models import ActionSpec, Policy, PolicyDecision


class PlannedAction(BaseModel):
    step: str = Field(description="stable id of the step within the plan, e.g. '1'")
    action: ActionSpec


class HealingPlan(BaseModel):
    service: str | None = None
    problem_id: str | None = None
    solution_id: str | None = None
    description: str
    actions: list[PlannedAction]
    why: str = ""


class ApprovalDecision(BaseModel):
    approver: str
    approved: bool
    reason: str = ""
    action_id: str | None = Field(
        default=None, description="the step to decide; None decides the pending one"
    )
    grant: str | None = Field(
        default=None,
        description="the signed approval (`aiops approve` or the API make it); required "
        "when AIOPS_APPROVALS=signed, where it, not `approver`, says who decided",
    )


class HealingInput(BaseModel):
    incident_id: str
    plan: HealingPlan
    # a snapshot of the policy in force when the incident started, so replays decide alike
    policy: Policy
    service_critical: bool = False
    verify_timeout_s: float = 60.0
    retry_of: str | None = None


StepStatus = Literal[
    "pending",
    "awaiting_approval",
    "done",
    "failed",
    "refused",
    "rejected",
    "escalated",
    "skipped",
    "would_run",
]


class StepRecord(BaseModel):
    step: str
    action: ActionSpec
    status: StepStatus = "pending"
    decision: PolicyDecision | None = None
    outcome: ActionOutcome | None = None
    approval: ApprovalDecision | None = None


class CompensationRecord(BaseModel):
    step: str
    outcome: ActionOutcome


HealingOutcome = Literal[
    "healed",
    "failed",
    "compensated",
    "escalated",
    "refused",
    "unverified",
    "rejected",
    "resolved_by_source",
    "shadow",
]


class HealingResult(BaseModel):
    outcome: HealingOutcome
    detail: str
    steps: list[StepRecord]
    compensations: list[CompensationRecord] = Field(default_factory=list)
    verified: bool | None = None


class HealingStatus(BaseModel):
    phase: str
    plan: HealingPlan
    steps: list[StepRecord]
    pending_approval: str | None = None
    compensations: list[CompensationRecord] = Field(default_factory=list)
    outcome: HealingOutcome | None = None


# --- activity requests and results ---


class PolicyContextRequest(BaseModel):
    workflow_id: str
    service: str | None
    target: str
    window_s: float


class RemediationRequest(BaseModel):
    workflow_id: str
    service: str | None
    outcome: str | None = None


class VerifyRequest(BaseModel):
    service: str | None
    timeout_s: float = 60.0
    interval_s: float = 1.0


class VerifyResult(BaseModel):
    healthy: bool | None = Field(description="None: nothing to probe (no health endpoint)")
    detail: str
    latency_ms: float | None = None


class AuditRequest(BaseModel):
    key: str = Field(description="unique per audited event, so a retried activity appends once")
    actor: str
    action: str
    target: str | None
    decision: str
    details: dict[str, Any] = Field(default_factory=dict)
    workflow_id: str | None = None


class ApprovalCheckRequest(BaseModel):
    workflow_id: str
    step: str
    decision_id: str | None
    action: ActionSpec
    service: str | None
    decision: ApprovalDecision
    key: str = Field(description="audit key of this decision, unique in the workflow")


class ApprovalCheck(BaseModel):
    accepted: bool
    approver: str = Field(description="who decided: the grant's verified subject when signed")
    signed: bool = False
    detail: str = ""


class ForwardDecisionRequest(BaseModel):
    healing_workflow_id: str
    decision: ApprovalDecision


class ForwardedDecision(BaseModel):
    accepted: bool
    message: str
