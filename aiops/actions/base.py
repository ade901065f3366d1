"""The contract every action adapter keeps, so the executor can guarantee "never twice"."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, Field

from aiops.policy.models import ActionSpec
from aiops.registry.models import ServiceRecord


class ActionContext(BaseModel):
    idempotency_key: str
    workflow_id: str
    step: str
    action: ActionSpec
    service: ServiceRecord | None = None


class ActionOutcome(BaseModel):
    success: bool
    detail: str
    data: dict[str, Any] = Field(default_factory=dict)
    # whether compensate() can undo this action; when not, why (shown in status and audit)
    compensable: bool = False
    compensation_note: str = ""
    replayed: bool = Field(
        default=False, description="true when the outcome was recorded earlier, not acted now"
    )


class ActionError(Exception):
    """The adapter could not act; the message is shown to the operator."""


class Adapter(Protocol):
    name: str

    async def prepare(self, ctx: ActionContext) -> dict[str, Any]:
        """Capture what reconcile and compensate will need (previous value, pid...)."""
        ...

    async def apply(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome: ...

    async def reconcile(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome | None:
        """After a crash mid-action: the outcome if apply already took effect, else None."""
        ...

    async def compensate(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome: ...
