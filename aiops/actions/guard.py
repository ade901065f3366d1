"""The check where actions run: whoever started the workflow, whatever its input says.

Before any adapter is called, `execute_action` asks the guard. It resolves the action's
target to a registered service (the one the policy, the rate limit, the blast radius and
the adapter all see), checks the parameters against the action type's model and the
service's bounds, evaluates the server's current policy (not the workflow's snapshot) with
counts read now, and, when the policy wants a human, checks the signed approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from aiops.actions.params import parameter_refusal
from aiops.auth.approvals import ApprovalRefused, ApprovalSigner, action_digest
from aiops.errors import AiopsError
from aiops.modes import ModeStore
from aiops.policy import PolicyFile, evaluate, forbidden_reason
from aiops.policy.models import ActionSpec, PolicyContext, PolicyDecision
from aiops.registry import ServiceRegistry
from aiops.registry.models import ServiceRecord
from aiops.registry.store import UnknownService

# The action type decides what acts. A service registered with `adapter: simulated` is
# the one exception, and only on a worker started with AIOPS_SIMULATED_ADAPTER=1.
ADAPTER_OF_TYPE = {
    "restart": "process",
    "start": "process",
    "stop": "process",
    "config_update": "http",
    "cache_clear": "http",
    "scale": "http",
    "log_analysis": "http",
    "execute": "redis",
}
SIMULATED = "simulated"


class RefusedAction(AiopsError):
    pass


@dataclass(frozen=True)
class Cleared:
    """What the guard let through: the service acted on, the adapter, and why."""

    service: ServiceRecord
    adapter: str
    decision: PolicyDecision
    approved_by: str | None


def target_kind(service: ServiceRecord) -> str | None:
    return "redis" if service.endpoint.startswith(("redis://", "rediss://")) else None


async def policy_context(
    pool: asyncpg.Pool,
    *,
    workflow_id: str,
    service: ServiceRecord | None,
    target: str,
    window_s: float,
    as_of: datetime | None = None,
) -> PolicyContext:
    """The counts the rate limit and the blast radius need, read now; as_of: only what
    was claimed before then (the counts as they stood when an action made its claim).

    A remediation counts toward the blast radius once it has claimed an action on the
    service, not when it merely opened: two that open at once then both wait for their
    turn at the per-target lock, and the first to claim is the one that acts."""
    recent = await pool.fetchval(
        "SELECT count(*) FROM action_executions WHERE target = $1"
        " AND started_at > now() - make_interval(secs => $2) AND workflow_id <> $3"
        " AND ($4::timestamptz IS NULL OR started_at < $4)",
        target,
        window_s,
        workflow_id,
        as_of,
    )
    mode = await ModeStore(pool).effective(service.name if service else None)
    concurrent = await pool.fetchval(
        "SELECT count(*) FROM remediations r WHERE r.service = $1 AND r.finished_at IS NULL"
        " AND r.workflow_id <> $2 AND EXISTS (SELECT 1 FROM action_executions a"
        " WHERE a.workflow_id = r.workflow_id AND a.service = $1"
        " AND ($3::timestamptz IS NULL OR a.started_at < $3))",
        service.name if service else "",
        workflow_id,
        as_of,
    )
    return PolicyContext(
        service_critical=service.critical if service else False,
        recent_actions_on_target=int(recent or 0),
        concurrent_remediations=int(concurrent or 0),
        target_kind=target_kind(service) if service else None,
        mode=mode,
    )


@dataclass(frozen=True)
class Approval:
    """What the workflow says about the step's approval; the guard decides if it counts."""

    decision_id: str | None = None
    grant: str | None = None
    approver: str | None = None


class ActionGuard:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: ServiceRegistry,
        policy: PolicyFile,
        signer: ApprovalSigner,
        approvals: Literal["open", "signed"],
        adapters: frozenset[str],
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._policy = policy
        self._signer = signer
        self._approvals = approvals
        self._adapters = adapters

    async def resolve(self, action: ActionSpec, plan_service: str | None) -> ServiceRecord:
        """The registered service the action's target names; it must be the plan's own,
        and a plan must name one (a learned fix's own target is no licence by itself)."""
        try:
            service = await self._registry.get(action.target)
        except UnknownService:
            raise RefusedAction(
                f"target {action.target!r} is not a registered service; aiops acts only on "
                "registered services"
            ) from None
        if plan_service is None:
            raise RefusedAction(
                f"the plan names no service: aiops acts only on the incident's own service "
                f"({action.target} was named)"
            )
        if plan_service != service.name:
            raise RefusedAction(
                f"target {service.name} is not the service this plan is for ({plan_service})"
            )
        return service

    def adapter_for(self, action: ActionSpec, service: ServiceRecord) -> str:
        if service.metadata.get("adapter") == SIMULATED:
            if SIMULATED not in self._adapters:
                raise RefusedAction(
                    f"{service.name} is registered for the simulated adapter, which this "
                    "worker does not have (AIOPS_SIMULATED_ADAPTER=1 enables it)"
                )
            return SIMULATED
        name = ADAPTER_OF_TYPE.get(action.action_type)
        if name is None:
            raise RefusedAction(f"no adapter acts for action type {action.action_type!r}")
        if name not in self._adapters:
            raise RefusedAction(f"adapter {name!r} is not enabled on this worker")
        return name

    async def clear(
        self,
        *,
        workflow_id: str,
        step: str,
        action: ActionSpec,
        plan_service: str | None,
        approval: Approval,
        as_of: datetime | None = None,
    ) -> Cleared:
        """Let the action through, or raise RefusedAction saying why not. as_of: the time
        of the action's claim when it has one (see policy_context)."""
        reason = forbidden_reason(action)
        if reason is not None:
            raise RefusedAction(f"refused: {reason} is forbidden")
        service = await self.resolve(action, plan_service)
        adapter = self.adapter_for(action, service)
        why = parameter_refusal(
            action.action_type, action.parameters, service, simulated=adapter == SIMULATED
        )
        if why is not None:
            raise RefusedAction(f"refused: {why}")
        policy = self._policy.current()
        context = await policy_context(
            self._pool,
            workflow_id=workflow_id,
            service=service,
            target=action.target,
            window_s=policy.rate_limit.window_s,
            as_of=as_of,
        )
        decision = evaluate(policy, action, context)
        if decision.verdict == "deny":
            raise RefusedAction(decision.reason)
        if context.mode == "shadow":
            raise RefusedAction(
                f"refused: {service.name} is in shadow mode: aiops records what it would "
                "do and runs nothing (aiops mode set --service ... act)"
            )
        approved_by = None
        if decision.verdict == "needs_approval":
            approved_by = await self._approved_by(workflow_id, step, action, plan_service, approval)
        return Cleared(service, adapter, decision, approved_by)

    async def _approved_by(
        self,
        workflow_id: str,
        step: str,
        action: ActionSpec,
        plan_service: str | None,
        approval: Approval,
    ) -> str:
        if approval.grant is None and self._approvals == "open" and approval.approver:
            return f"{approval.approver} (unsigned, AIOPS_APPROVALS=open)"
        try:
            grant = self._signer.verify(
                approval.grant,
                workflow_id=workflow_id,
                step=step,
                decision_id=approval.decision_id,
                # what the approver saw: the action (its target included) and the plan's service
                digest=action_digest(action, plan_service),
            )
        except ApprovalRefused as error:
            raise RefusedAction(f"refused: the step needs approval and {error}") from None
        if not grant.approved:
            raise RefusedAction(f"refused: {grant.approver} rejected this step")
        # a grant is spent on one action: copied out of a history, it runs nothing else
        key = f"{workflow_id}:{step}"
        spent_on = await self._pool.fetchval(
            "INSERT INTO approval_grants_used (grant_id, idempotency_key, approver)"
            " VALUES ($1, $2, $3) ON CONFLICT (grant_id) DO UPDATE"
            " SET grant_id = EXCLUDED.grant_id RETURNING idempotency_key",
            grant.grant_id,
            key,
            grant.approver,
        )
        if spent_on != key:
            raise RefusedAction("refused: that signed approval was spent on another action")
        return grant.approver
