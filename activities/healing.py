"""Healing activities: policy context, act once, undo, verify, audit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import asyncpg
import httpx
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from aiops.actions.base import ActionOutcome
from aiops.actions.executor import ActionExecutor, ExecuteRequest
from aiops.actions.guard import policy_context
from aiops.audit import AuditEntry, AuditLog
from aiops.auth.approvals import ApprovalRefused, ApprovalSigner, action_digest
from aiops.models.healing import (
    ApprovalCheck,
    ApprovalCheckRequest,
    AuditRequest,
    ForwardDecisionRequest,
    ForwardedDecision,
    PolicyContextRequest,
    RemediationRequest,
    VerifyRequest,
    VerifyResult,
)
from aiops.policy.models import PolicyContext
from aiops.privacy import mask, mask_json
from aiops.registry import ServiceRegistry
from aiops.registry.models import ServiceRecord
from aiops.registry.store import UnknownService


@asynccontextmanager
async def _heartbeating(detail: str, every_s: float = 2.0) -> AsyncIterator[None]:
    """Heartbeat while an action runs, so a worker that dies mid-action is noticed within
    the heartbeat timeout and the attempt moves to another worker, which reconciles."""

    async def beat() -> None:
        while True:
            activity.heartbeat(detail)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


# who decided stays readable in the audit log; everything else in details is masked
_IDENTITY_KEYS = frozenset({"approved_by", "approver"})


def _as_called(request: ExecuteRequest) -> ExecuteRequest:
    """The request as the workflow that really called: its id and run from the activity's
    own info, not from the input, so no caller acts or undoes in another's name."""
    try:
        info = activity.info()
    except RuntimeError:  # called directly (tests, tools): the request is all there is
        return request
    return request.model_copy(
        update={"workflow_id": info.workflow_id, "run_id": info.workflow_run_id}
    )


class HealingActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        executor: ActionExecutor,
        registry: ServiceRegistry,
        audit: AuditLog,
        signer: ApprovalSigner,
        approvals: Literal["open", "signed"] = "open",
        client: Client | None = None,
    ) -> None:
        self._pool = pool
        self._executor = executor
        self._registry = registry
        self._audit = audit
        self._signer = signer
        self._approvals = approvals
        self._client = client

    async def _service(self, name: str | None) -> ServiceRecord | None:
        if not name:
            return None
        try:
            return await self._registry.get(name)
        except UnknownService:
            return None

    @activity.defn(name="load_policy_context")
    async def policy_context(self, request: PolicyContextRequest) -> PolicyContext:
        """Counts the rate limit and blast radius need, and whether the service is critical."""
        return await policy_context(
            self._pool,
            workflow_id=request.workflow_id,
            service=await self._service(request.service),
            target=request.target,
            window_s=request.window_s,
        )

    @activity.defn(name="check_approval")
    async def check_approval(self, request: ApprovalCheckRequest) -> ApprovalCheck:
        """Whether a decision counts: with AIOPS_APPROVALS=signed only a genuine grant for
        exactly this pending step does. A refused decision is audited here, since nothing
        else will remember it."""
        decision = request.decision
        if decision.grant is None and self._approvals == "open":
            if decision.approver.strip():
                return ApprovalCheck(accepted=True, approver=decision.approver)
            detail = "an approval needs an approver"
        else:
            try:
                grant = self._signer.verify(
                    decision.grant,
                    workflow_id=request.workflow_id,
                    step=request.step,
                    decision_id=request.decision_id,
                    digest=action_digest(request.action, request.service),
                )
            except ApprovalRefused as error:
                detail = str(error)
            else:
                if grant.approved == decision.approved:
                    return ApprovalCheck(accepted=True, approver=grant.approver, signed=True)
                detail = "the decision says otherwise than its signed grant"
        await self.audit(
            AuditRequest(
                key=request.key,
                actor=decision.approver.strip() or "unknown",
                action="approval",
                target=request.action.target,
                decision="refused",
                details={"detail": detail, "step": request.step, "claimed": decision.approved},
                workflow_id=request.workflow_id,
            )
        )
        return ApprovalCheck(accepted=False, approver=decision.approver, detail=detail)

    @activity.defn(name="forward_decision")
    async def forward_decision(self, request: ForwardDecisionRequest) -> ForwardedDecision:
        """An incident's `decide`, sent on to its healing child as an update, so the
        caller hears the child's own verdict instead of a hopeful "sent"."""
        if self._client is None:
            raise RuntimeError("forward_decision needs the worker's Temporal client")
        handle = self._client.get_workflow_handle(request.healing_workflow_id)
        try:
            said: str = await handle.execute_update("decide", request.decision, result_type=str)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            return ForwardedDecision(accepted=False, message=str(getattr(cause, "message", cause)))
        except RPCError:
            return ForwardedDecision(
                accepted=False, message=f"{request.healing_workflow_id} is no longer running"
            )
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            return ForwardedDecision(
                accepted=False, message=f"{request.healing_workflow_id} did not answer in time"
            )
        return ForwardedDecision(accepted=True, message=said)

    @activity.defn(name="open_remediation")
    async def open_remediation(self, request: RemediationRequest) -> None:
        await self._pool.execute(
            "INSERT INTO remediations (workflow_id, service) VALUES ($1, $2)"
            " ON CONFLICT (workflow_id) DO NOTHING",
            request.workflow_id,
            request.service or "",
        )

    @activity.defn(name="close_remediation")
    async def close_remediation(self, request: RemediationRequest) -> None:
        await self._pool.execute(
            "UPDATE remediations SET finished_at = coalesce(finished_at, now()), outcome = $2"
            " WHERE workflow_id = $1",
            request.workflow_id,
            request.outcome,
        )

    @activity.defn(name="execute_action")
    async def execute_action(self, request: ExecuteRequest) -> ActionOutcome:
        """Act once for the key, then audit the result in the same attempt: a retry after a
        crash between the two finds the action done (reconcile) and writes the row once."""
        request = _as_called(request)
        async with _heartbeating(f"{request.action.action_type} on {request.action.target}"):
            outcome = await self._executor.execute(request)
        # a service's own words (an error body, a log report) go into the history masked
        outcome = outcome.model_copy(
            update={"detail": mask(outcome.detail), "data": mask_json(outcome.data)}
        )
        refused = bool(outcome.data.get("refused"))
        details: dict[str, object] = {"detail": outcome.detail}
        if "approved_by" in outcome.data:
            details["approved_by"] = outcome.data["approved_by"]
        await self.audit(
            AuditRequest(
                key=f"action:{request.step}",
                actor="aiops-healer",
                action="action",
                target=request.action.target,
                decision="refused" if refused else "succeeded" if outcome.success else "failed",
                details=details,
                workflow_id=request.workflow_id,
            )
        )
        return outcome

    @activity.defn(name="compensate_action")
    async def compensate_action(self, request: ExecuteRequest) -> ActionOutcome:
        request = _as_called(request)
        async with _heartbeating(f"undo {request.action.action_type} on {request.action.target}"):
            outcome = await self._executor.compensate(request)
        return outcome.model_copy(
            update={"detail": mask(outcome.detail), "data": mask_json(outcome.data)}
        )

    async def _health_target(self, name: str | None) -> ServiceRecord | VerifyResult:
        """The service whose health endpoint to probe, or the verdict when there is none."""
        if name is None:
            return VerifyResult(healthy=None, detail="no service to verify")
        try:
            service = await self._registry.get(name)
        except UnknownService:
            return VerifyResult(healthy=None, detail=f"{name} is not registered")
        if not service.health_check or not service.endpoint.startswith("http"):
            return VerifyResult(healthy=None, detail=f"{service.name} has no health endpoint")
        return service

    async def _probe(self, client: httpx.AsyncClient, service: ServiceRecord) -> VerifyResult:
        """One GET of the health endpoint; a 2xx is recorded as the service's health."""
        assert service.health_check is not None
        url = service.url(service.health_check)
        started = time.monotonic()
        try:
            response = await client.get(url)
        except httpx.HTTPError as error:
            return VerifyResult(healthy=False, detail=f"{url}: {error.__class__.__name__}")
        latency = (time.monotonic() - started) * 1000
        if not response.is_success:
            return VerifyResult(healthy=False, detail=f"{url} answered {response.status_code}")
        await self._registry.record_health(service.name, True, latency)
        return VerifyResult(
            healthy=True, detail=f"{url} answered {response.status_code}", latency_ms=latency
        )

    @activity.defn(name="probe_service_health")
    async def probe_health(self, request: VerifyRequest) -> VerifyResult:
        """The first probe alone, run inside the workflow task: healthy, or nothing to probe,
        is the verdict; healthy=False here only means "not yet", and the workflow waits it
        out with verify_service_health, which records the verdict."""
        target = await self._health_target(request.service)
        if isinstance(target, VerifyResult):
            return target
        async with httpx.AsyncClient(timeout=5.0) as client:
            return await self._probe(client, target)

    @activity.defn(name="verify_service_health")
    async def verify_health(self, request: VerifyRequest) -> VerifyResult:
        """Poll the service's health endpoint until it answers 2xx or the timeout passes."""
        target = await self._health_target(request.service)
        if isinstance(target, VerifyResult):
            return target
        deadline = time.monotonic() + request.timeout_s
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                probed = await self._probe(client, target)
                if probed.healthy:
                    return probed
                activity.heartbeat(probed.detail)
                if time.monotonic() >= deadline:
                    await self._registry.record_health(target.name, False, None)
                    return VerifyResult(healthy=False, detail=f"still unhealthy: {probed.detail}")
                await asyncio.sleep(request.interval_s)

    @activity.defn(name="record_audit")
    async def audit(self, request: AuditRequest) -> None:
        seen = await self._pool.fetchval(
            "SELECT 1 FROM audit_log WHERE workflow_id IS NOT DISTINCT FROM $1"
            " AND details->>'audit_key' = $2",
            request.workflow_id,
            request.key,
        )
        if seen:
            return
        await self._audit.append(
            AuditEntry(
                actor=request.actor,
                action=request.action,
                target=request.target,
                decision=request.decision,
                details={
                    **{
                        k: v if k in _IDENTITY_KEYS else mask_json(v)
                        for k, v in request.details.items()
                    },
                    "audit_key": request.key,
                },
                workflow_id=request.workflow_id,
            )
        )
