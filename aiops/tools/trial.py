"""The staging trial: a tool's steps run for real on a staging service, through the same
executor, guard, policy and adapters as any healing step, before anyone may approve it.

A service is a staging service when its registry metadata says `staging: true`. It stands
in for the services its `staging_for` names (a name or a list), or for any service when it
names none. The trial's steps are undone in reverse when one fails or a post-condition does
not hold; a trial that passes leaves staging as the tool left it, as production would be.

Nobody has read a built tool's specification when `aiops tools build` validates it, so a
trial never approves a step on anyone's behalf: a step the policy makes wait for a person
fails the trial before any step runs, until an admin who has read the specification runs
`aiops tools trial NAME --version N` and approves its steps as themselves. Every step the
trial runs, undoes or holds back is in the audit log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import asyncpg
import httpx

from aiops.actions.base import ActionOutcome
from aiops.actions.executor import ExecuteRequest
from aiops.actions.guard import policy_context
from aiops.audit import AuditEntry, AuditLog
from aiops.auth.approvals import ApprovalSigner, action_digest
from aiops.auth.roles import Identity
from aiops.policy import PolicyFile, evaluate
from aiops.policy.models import ActionSpec
from aiops.privacy import mask, mask_json
from aiops.registry import ServiceRegistry
from aiops.registry.models import ServiceRecord
from aiops.tools.models import Check, ToolSpec
from aiops.tools.spec import ToolSpecError, expand
from aiops.tools.validation import condition_refusal, first_arguments

STAGING = "staging"
STAGING_FOR = "staging_for"


class Acts(Protocol):
    """What runs a step: aiops.actions.executor.ActionExecutor."""

    async def execute(self, request: ExecuteRequest) -> ActionOutcome: ...

    async def compensate(self, request: ExecuteRequest) -> ActionOutcome: ...


@dataclass(frozen=True)
class TrialApprover:
    """The admin who read the specification and asked for its trial (`aiops tools trial`):
    its steps run on staging with their approval, signed with the server's key for their
    identity in signed mode. Only that command makes one."""

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


class TrialPolicy:
    """The verdict the guard will reach on a step on staging, read before any step runs:
    the same policy file and the staging service's own context (critical, mode, counts)."""

    def __init__(self, pool: asyncpg.Pool, policy: PolicyFile) -> None:
        self._pool = pool
        self._policy = policy

    async def waits_for_a_person(
        self, workflow_id: str, action: ActionSpec, staging: ServiceRecord
    ) -> str | None:
        """Why the step needs a person's approval on staging, or None."""
        policy = self._policy.current()
        context = await policy_context(
            self._pool,
            workflow_id=workflow_id,
            service=staging,
            target=action.target,
            window_s=policy.rate_limit.window_s,
        )
        decision = evaluate(policy, action, context)
        return decision.reason if decision.verdict == "needs_approval" else None


@dataclass(frozen=True)
class TrialRun:
    """What a trial needs besides the tool: who runs it (the build's actor, or the admin
    of `aiops tools trial`), where steps are audited, and the policy read ahead."""

    actor: str
    audit: AuditLog
    policy: TrialPolicy
    approver: TrialApprover | None = None
    health_timeout_s: float = 5.0


async def _audit_step(
    run: TrialRun,
    spec: ToolSpec,
    version: int,
    staging: ServiceRecord,
    request: ExecuteRequest,
    decision: str,
    *,
    action: str = "tool-trial",
    approved_by: str | None = None,
    detail: str = "",
) -> None:
    await run.audit.append(
        AuditEntry(
            actor=run.approver.identity.sub if run.approver else run.actor,
            action=f"{action}:{request.action.action_type}",
            target=staging.name,
            decision=decision,
            details={
                "tool": spec.name,
                "version": version,
                "step": int(request.step),
                # masked as every audited detail is (a config value may be a secret)
                "parameters": mask_json(request.action.parameters),
                "approved_by": approved_by,
                "detail": mask(detail[:500]),
            },
            workflow_id=request.workflow_id,
        )
    )


def trial_command(spec: ToolSpec, version: int) -> str:
    return f"aiops tools trial {spec.name} --version {version}"


async def staging_trial(
    spec: ToolSpec, version: int, staging: ServiceRecord, acts: Acts, run: TrialRun
) -> Check:
    workflow_id = f"tool-trial-{spec.name}-v{version}-{uuid.uuid4().hex[:8]}"
    try:
        actions = expand(spec, first_arguments(spec), staging.name)
    except ToolSpecError as error:
        return Check(stage="staging_trial", ok=False, detail=str(error))
    requests = [
        ExecuteRequest(
            idempotency_key=f"{workflow_id}:{number}",
            workflow_id=workflow_id,
            step=str(number),
            action=action,
            service=staging.name,
        )
        for number, action in enumerate(actions, 1)
    ]
    failed = [
        f"pre-condition {c}: {why}"
        for c in spec.preconditions
        if (why := condition_refusal(c, staging)) is not None
    ]
    if failed:
        return Check(stage="staging_trial", ok=False, detail="; ".join(failed))
    if run.approver is None:
        held = await _held_for_a_person(spec, version, staging, requests, run)
        if held is not None:
            return Check(stage="staging_trial", ok=False, detail=held, needs_a_person=True)
    ran: list[ExecuteRequest] = []
    failure: str | None = None
    for request in requests:
        if run.approver is not None:
            request = run.approver.approval(workflow_id, request.step, request)
        outcome = await acts.execute(request)
        approved_by = outcome.data.get("approved_by")
        await _audit_step(
            run,
            spec,
            version,
            staging,
            request,
            "succeeded" if outcome.success else "failed",
            approved_by=str(approved_by) if approved_by else None,
            detail=outcome.detail,
        )
        if not outcome.success:
            failure = (
                f"step {request.step} ({request.action.action_type}) on {staging.name}: "
                f"{outcome.detail}"
            )
            break
        ran.append(request)
    if failure is None:
        for condition in spec.postconditions:
            why = (
                await _healthy(staging, run.health_timeout_s)
                if condition.kind == "healthy"
                else condition_refusal(condition, staging)
            )
            if why is not None:
                failure = f"post-condition {condition}: {why}"
                break
    if failure is None:
        by = f", approved by {run.approver.identity.sub}" if run.approver else ""
        return Check(
            stage="staging_trial",
            ok=True,
            detail=f"{len(ran)} step(s) ran on staging service {staging.name} ({workflow_id}"
            f"{by}); post-conditions hold",
        )
    for request in reversed(ran):
        outcome = await acts.compensate(request)
        await _audit_step(
            run,
            spec,
            version,
            staging,
            request,
            "succeeded" if outcome.success else "failed",
            action="tool-trial-undo",
            detail=outcome.detail,
        )
    note = f"; {len(ran)} step(s) undone in reverse" if ran else ""
    return Check(stage="staging_trial", ok=False, detail=failure + note)


async def _held_for_a_person(
    spec: ToolSpec,
    version: int,
    staging: ServiceRecord,
    requests: list[ExecuteRequest],
    run: TrialRun,
) -> str | None:
    """Without an admin's trial, the steps that would wait for a person: each audited as
    held, and why the trial fails before any step runs."""
    held: list[str] = []
    for request in requests:
        why = await run.policy.waits_for_a_person(request.workflow_id, request.action, staging)
        if why is None:
            continue
        held.append(f"step {request.step} ({request.action.action_type}): {why}")
        await _audit_step(run, spec, version, staging, request, "needs-a-person", detail=why)
    if not held:
        return None
    return (
        f"needs a person: on {staging.name} {'; '.join(held)}; no step ran. An admin who has "
        f"read the specification runs `{trial_command(spec, version)}` to approve them"
    )
