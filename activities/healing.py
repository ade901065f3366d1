"""Healing activities: policy context, act once, undo, verify, audit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from temporalio import activity

from aiops.actions.base import ActionOutcome
from aiops.actions.executor import ActionExecutor, ExecuteRequest
from aiops.audit import AuditEntry, AuditLog
from aiops.models.healing import (
    AuditRequest,
    PolicyContextRequest,
    RemediationRequest,
    VerifyRequest,
    VerifyResult,
)
from aiops.policy.models import PolicyContext
from aiops.registry import ServiceRegistry
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


class HealingActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        executor: ActionExecutor,
        registry: ServiceRegistry,
        audit: AuditLog,
    ) -> None:
        self._pool = pool
        self._executor = executor
        self._registry = registry
        self._audit = audit

    @activity.defn(name="load_policy_context")
    async def policy_context(self, request: PolicyContextRequest) -> PolicyContext:
        """Counts the rate limit and blast radius need, and whether the service is critical."""
        critical = False
        if request.service:
            try:
                critical = (await self._registry.get(request.service)).critical
            except UnknownService:
                critical = False
        recent = await self._pool.fetchval(
            "SELECT count(*) FROM action_executions WHERE target = $1"
            " AND started_at > now() - make_interval(secs => $2) AND workflow_id <> $3",
            request.target,
            request.window_s,
            request.workflow_id,
        )
        concurrent = await self._pool.fetchval(
            "SELECT count(*) FROM remediations WHERE service = $1 AND finished_at IS NULL"
            " AND workflow_id <> $2",
            request.service,
            request.workflow_id,
        )
        return PolicyContext(
            service_critical=critical,
            recent_actions_on_target=int(recent or 0),
            concurrent_remediations=int(concurrent or 0),
        )

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
        async with _heartbeating(f"{request.action.action_type} on {request.action.target}"):
            outcome = await self._executor.execute(request)
        await self.audit(
            AuditRequest(
                key=f"action:{request.step}",
                actor="aiops-healer",
                action="action",
                target=request.action.target,
                decision="succeeded" if outcome.success else "failed",
                details={"detail": outcome.detail},
                workflow_id=request.workflow_id,
            )
        )
        return outcome

    @activity.defn(name="compensate_action")
    async def compensate_action(self, request: ExecuteRequest) -> ActionOutcome:
        async with _heartbeating(f"undo {request.action.action_type} on {request.action.target}"):
            return await self._executor.compensate(request)

    @activity.defn(name="verify_service_health")
    async def verify_health(self, request: VerifyRequest) -> VerifyResult:
        """Poll the service's health endpoint until it answers 2xx or the timeout passes."""
        if request.service is None:
            return VerifyResult(healthy=None, detail="no service to verify")
        try:
            service = await self._registry.get(request.service)
        except UnknownService:
            return VerifyResult(healthy=None, detail=f"{request.service} is not registered")
        if not service.health_check or not service.endpoint.startswith("http"):
            return VerifyResult(healthy=None, detail=f"{service.name} has no health endpoint")
        url = service.url(service.health_check)
        deadline = time.monotonic() + request.timeout_s
        last = "no answer yet"
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                started = time.monotonic()
                try:
                    response = await client.get(url)
                    latency = (time.monotonic() - started) * 1000
                    if response.is_success:
                        await self._registry.record_health(service.name, True, latency)
                        return VerifyResult(
                            healthy=True,
                            detail=f"{url} answered {response.status_code}",
                            latency_ms=latency,
                        )
                    last = f"{url} answered {response.status_code}"
                except httpx.HTTPError as error:
                    last = f"{url}: {error.__class__.__name__}"
                activity.heartbeat(last)
                if time.monotonic() >= deadline:
                    await self._registry.record_health(service.name, False, None)
                    return VerifyResult(healthy=False, detail=f"still unhealthy: {last}")
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
                details={**request.details, "audit_key": request.key},
                workflow_id=request.workflow_id,
            )
        )
