"""What a notification says and how it went: the activity's input and output."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from aiops.policy.models import ActionSpec


class NotificationKind(StrEnum):
    APPROVAL_REQUESTED = "approval_requested"  # a critical step waits for a person
    APPROVAL_REMINDER = "approval_reminder"  # half the approval timeout has passed
    APPROVAL_TIMEOUT = "approval_timeout"  # nobody decided: escalated, nothing was done
    ESCALATED_UNKNOWN = "escalated_unknown"  # no known fix: a person must look
    REMEDIATION_FAILED = "remediation_failed"  # a step failed; done steps were rolled back
    FIXES_EXHAUSTED = "fixes_exhausted"  # every fix the ladder may try failed: a person must look
    HEALED = "healed"  # only with AIOPS_NOTIFY_HEALED=1
    # the audit anchor found the chain broken or its file tampered with: a person must look
    AUDIT_BROKEN = "audit_broken"


# the kinds that carry approve and reject links
APPROVAL_KINDS = frozenset(
    {NotificationKind.APPROVAL_REQUESTED, NotificationKind.APPROVAL_REMINDER}
)


class NotifyRequest(BaseModel):
    """One notification, as a workflow asks for it (through the send_notification activity)."""

    kind: NotificationKind
    key: str = Field(
        min_length=1,
        description="unique per send within the workflow, e.g. approval-requested:1: the "
        "audit key, and what makes a retried activity skip the channels already told",
    )
    incident_id: str = Field(min_length=1, description="the incident's workflow id")
    workflow_id: str | None = Field(
        default=None,
        description="the HealingWorkflow for the approval kinds (what a link decides on); "
        "else the workflow the notification is about (None: the incident)",
    )
    service: str | None = None
    step: str | None = Field(default=None, description="the plan step, e.g. '1'")
    action: ActionSpec | None = None
    decision_id: str | None = Field(
        default=None,
        description="the step's policy decision id (StepRecord.decision.decision_id): an "
        "approve link counts only for exactly this decision",
    )
    why: str = Field(default="", description="e.g. 'scale is a critical action type'")
    plan_description: str = ""
    detail: str = Field(
        default="", description="the compensation summary, the escalation reason, ..."
    )
    approval_timeout_s: float | None = Field(
        default=None, gt=0, description="how long the step waits (None: the server's default)"
    )
    expires_at: datetime | None = Field(
        default=None,
        description="when the approval wait ends (workflow.now() + timeout at the start of "
        "the wait); a reminder's links then expire with the first ones. None: now + "
        "approval_timeout_s",
    )

    @property
    def audit_workflow_id(self) -> str:
        return self.workflow_id or self.incident_id


class ChannelResult(BaseModel):
    """One destination: a configured URL, and for e-mail one recipient of it."""

    scheme: str
    channel: str = Field(description="the URL with its secrets masked, never the URL itself")
    recipient: str = Field(description="who the links name: an address, a name, channel:<scheme>")
    ok: bool
    skipped: bool = Field(
        default=False, description="already sent for this key (a retried activity)"
    )
    error: str | None = None


class NotifyResult(BaseModel):
    channels: list[ChannelResult] = Field(default_factory=list)
    sent: int = 0
    failed: int = 0
    note: str = Field(
        default="", description="why nothing was sent, or that what was sent was not audited"
    )
