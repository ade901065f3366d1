"""The staging trial: a tool's steps run for real on a staging service, through the same
executor, guard, policy and adapters as any healing step, before anyone may approve it.

A service is a staging service when its registry metadata says `staging: true`. It stands
in for the services its `staging_for` names (a name or a list), or for any service when it
names none. The trial's steps are undone in reverse when one fails or a post-condition does
not hold; a trial that passes leaves staging as the tool left it, as production would be.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import httpx

from aiops.actions.base import ActionOutcome
from aiops.actions.executor import ExecuteRequest
from aiops.auth.approvals import ApprovalSigner, action_digest
from aiops.auth.roles import Identity
from aiops.registry import ServiceRegistry
from aiops.registry.models import ServiceRecord
from aiops.tools.models import Check, ToolSpec
from aiops.tools.spec import ToolSpecError, expand
from aiops.tools.validation import argument_samples, condition_refusal

STAGING = "staging"
STAGING_FOR = "staging_for"


class Acts(Protocol):
    """What runs a step: aiops.actions.executor.ActionExecutor."""

    async def execute(self, request: ExecuteRequest) -> ActionOutcome: ...

    async def compensate(self, request: ExecuteRequest) -> ActionOutcome: ...


@dataclass(frozen=True)
class TrialApprover:
    """Who runs the trial approves its steps on staging: a step the policy makes wait for a
    person runs with their approval (signed with the server's key in signed mode), and
    without one the trial fails saying so."""

    identity: Identity
    signer: ApprovalSigner | None = None

    def approval(self, workflow_id: str, step: str, request: ExecuteRequest) -> ExecuteRequest:
        decision_id = f"trial-{uuid.uuid4().hex}"
        grant = None
        if self.signer is not None:
            grant = self.signer.grant(
                self.identity,
                workflow_id=workflow_id,
                step=step,
                decision_id=decision_id,
                digest=action_digest(request.action, request.service),
                approved=True,
                reason="tool staging trial",
                ttl=timedelta(minutes=5),
            )
        return request.model_copy(
            update={"decision_id": decision_id, "grant": grant, "approver": self.identity.sub}
        )


def stands_in_for(staging: ServiceRecord, service: str | None) -> bool:
    if staging.metadata.get(STAGING) is not True:
        return False
    named: Any = staging.metadata.get(STAGING_FOR)
    if named is None:
        return True
    names = [named] if isinstance(named, str) else list(named)
    return service in names


async def staging_service(registry: ServiceRegistry, service: str | None) -> ServiceRecord | None:
    """The staging service for `service`: one that names it before one that names none."""
    candidates = [s for s in await registry.discover() if stands_in_for(s, service)]
    candidates.sort(key=lambda s: (s.metadata.get(STAGING_FOR) is None, s.name))
    return candidates[0] if candidates else None


async def _healthy(service: ServiceRecord, timeout_s: float) -> str | None:
    if not service.health_check or not service.endpoint.startswith("http"):
        return None  # nothing to ask, as the healing verification treats it

    url = service.url(service.health_check)
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(url)
    except httpx.HTTPError as error:
        return f"{url}: {type(error).__name__}"
    return None if response.is_success else f"{url} answered {response.status_code}"


async def staging_trial(
    spec: ToolSpec,
    version: int,
    staging: ServiceRecord,
    acts: Acts,
    *,
    approver: TrialApprover | None = None,
    health_timeout_s: float = 5.0,
) -> Check:
    workflow_id = f"tool-trial-{spec.name}-v{version}-{uuid.uuid4().hex[:8]}"
    try:
        actions = expand(spec, argument_samples(spec)[0], staging.name)
    except ToolSpecError as error:
        return Check(stage="staging_trial", ok=False, detail=str(error))
    failed = [
        f"pre-condition {c}: {why}"
        for c in spec.preconditions
        if (why := condition_refusal(c, staging)) is not None
    ]
    ran: list[ExecuteRequest] = []
    failure = "; ".join(failed) or None
    for number, action in enumerate(actions, 1):
        if failure is not None:
            break
        request = ExecuteRequest(
            idempotency_key=f"{workflow_id}:{number}",
            workflow_id=workflow_id,
            step=str(number),
            action=action,
            service=staging.name,
        )
        if approver is not None:
            request = approver.approval(workflow_id, str(number), request)
        outcome = await acts.execute(request)
        if not outcome.success:
            failure = f"step {number} ({action.action_type}) on {staging.name}: {outcome.detail}"
            break
        ran.append(request)
    if failure is None:
        for condition in spec.postconditions:
            why = (
                await _healthy(staging, health_timeout_s)
                if condition.kind == "healthy"
                else condition_refusal(condition, staging)
            )
            if why is not None:
                failure = f"post-condition {condition}: {why}"
                break
    if failure is None:
        return Check(
            stage="staging_trial",
            ok=True,
            detail=f"{len(ran)} step(s) ran on staging service {staging.name} ({workflow_id}); "
            f"post-conditions hold",
        )
    undone = [await acts.compensate(r) for r in reversed(ran)]
    note = f"; {len(undone)} step(s) undone in reverse" if undone else ""
    return Check(stage="staging_trial", ok=False, detail=failure + note)
