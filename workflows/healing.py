"""HealingWorkflow: run a plan's actions within the policy, with approvals and a saga."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from aiops.actions.base import ActionOutcome
    from aiops.actions.executor import ExecuteRequest
    from aiops.models.healing import (
        ApprovalDecision,
        AuditRequest,
        CompensationRecord,
        HealingInput,
        HealingOutcome,
        HealingResult,
        HealingStatus,
        PolicyContextRequest,
        RemediationRequest,
        StepRecord,
        VerifyRequest,
        VerifyResult,
    )
    from aiops.policy import evaluate
    from aiops.policy.models import PolicyContext

_QUICK = timedelta(seconds=30)
_ACT = timedelta(minutes=5)
_HEARTBEAT = timedelta(seconds=10)
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)


@workflow.defn(name="HealingWorkflow")
class HealingWorkflow:
    def __init__(self) -> None:
        self._input: HealingInput | None = None
        self._steps: list[StepRecord] = []
        self._compensations: list[CompensationRecord] = []
        self._decisions: dict[str, ApprovalDecision] = {}
        self._pending: str | None = None
        self._phase = "starting"
        self._outcome: HealingOutcome | None = None
        self._reporting: list[asyncio.Task[None]] = []

    # --- operator interface -------------------------------------------------------------

    @workflow.query
    def status(self) -> HealingStatus:
        assert self._input is not None
        return HealingStatus(
            phase=self._phase,
            plan=self._input.plan,
            steps=self._steps,
            pending_approval=self._pending,
            compensations=self._compensations,
            outcome=self._outcome,
        )

    def _step_for(self, decision: ApprovalDecision) -> str | None:
        return decision.action_id or self._pending

    @workflow.signal
    def approve(self, decision: ApprovalDecision) -> None:
        # a signal cannot be refused, so one that names nothing valid is dropped (and logged)
        step = self._step_for(decision)
        if not decision.approver.strip() or step is None or step not in self._step_ids():
            workflow.logger.warning("ignored approval %s: no such pending step", decision)
            return
        self._decisions.setdefault(step, decision)

    @workflow.update
    def decide(self, decision: ApprovalDecision) -> str:
        step = self._step_for(decision)
        assert step is not None
        self._decisions.setdefault(step, decision)
        verdict = "approved" if decision.approved else "rejected"
        return f"step {step} {verdict} by {decision.approver}"

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        if not decision.approver.strip():
            raise ValueError("approver is required")
        step = self._step_for(decision)
        if step is None:
            raise ValueError("no action is waiting for approval; name one with action_id")
        if step not in self._step_ids():
            raise ValueError(f"unknown action_id {step!r}; the plan has {self._step_ids()}")
        if step in self._decisions:
            raise ValueError(f"step {step} was already decided")

    async def _report(self) -> None:
        """Tell the parent incident where we are, so its status query shows approvals."""
        parent = workflow.info().parent
        if parent is None:
            return
        await workflow.get_external_workflow_handle(parent.workflow_id).signal(
            "healing_progress", self.status()
        )

    def _report_soon(self) -> None:
        """Progress that nothing waits on: sent with the next commands, not awaited, so a
        step costs no extra round trip to the server."""
        self._reporting.append(asyncio.create_task(self._report()))

    def _step_ids(self) -> list[str]:
        return [p.step for p in self._input.plan.actions] if self._input else []

    # --- the plan -----------------------------------------------------------------------

    @workflow.run
    async def run(self, input: HealingInput) -> HealingResult:
        self._input = input
        wid = workflow.info().workflow_id
        plan = input.plan
        self._steps = [StepRecord(step=p.step, action=p.action) for p in plan.actions]
        await self._call(
            "open_remediation", RemediationRequest(workflow_id=wid, service=plan.service)
        )
        saga: list[ExecuteRequest] = []
        outcome: HealingOutcome | None = None
        detail = ""
        try:
            for record in sorted(self._steps, key=lambda r: r.action.order):
                stop = await self._run_step(wid, record, saga)
                if stop is not None:
                    outcome, detail = stop
                    break
            verified: bool | None = None
            if outcome is None:
                self._phase = "verifying"
                check = await workflow.execute_activity(
                    "verify_service_health",
                    VerifyRequest(service=plan.service, timeout_s=input.verify_timeout_s),
                    result_type=VerifyResult,
                    start_to_close_timeout=timedelta(seconds=input.verify_timeout_s + 30),
                    heartbeat_timeout=timedelta(seconds=15),
                    retry_policy=_RETRY,
                )
                verified = check.healthy
                await self._audit(wid, "verify", plan.service, str(check.healthy), check.detail)
                if check.healthy is False:
                    outcome, detail = "failed", f"verification failed: {check.detail}"
                else:
                    outcome, detail = "healed", check.detail
            if outcome in ("failed", "refused", "escalated") and saga:
                await self._compensate(wid, saga)
                if outcome == "failed":
                    outcome = "compensated"
            self._outcome = outcome
            self._phase = "done"
            return HealingResult(
                outcome=outcome,
                detail=detail,
                steps=self._steps,
                compensations=self._compensations,
                verified=verified,
            )
        finally:
            # progress reports resolve long before this; a lost one must not fail the plan
            await asyncio.gather(*self._reporting, return_exceptions=True)
            await self._call(
                "close_remediation",
                RemediationRequest(workflow_id=wid, service=plan.service, outcome=self._outcome),
            )

    async def _run_step(
        self, wid: str, record: StepRecord, saga: list[ExecuteRequest]
    ) -> tuple[HealingOutcome, str] | None:
        """Run one step; return (outcome, detail) when the plan must stop."""
        assert self._input is not None
        plan, action = self._input.plan, record.action
        self._phase = f"step {record.step}: policy"
        context = await workflow.execute_local_activity(
            "load_policy_context",
            PolicyContextRequest(
                workflow_id=wid,
                service=plan.service,
                target=action.target,
                window_s=self._input.policy.rate_limit.window_s,
            ),
            result_type=PolicyContext,
            start_to_close_timeout=_QUICK,
            retry_policy=_RETRY,
        )
        if self._input.service_critical:
            context = context.model_copy(update={"service_critical": True})
        decision = evaluate(self._input.policy, action, context)
        record.decision = decision
        await self._audit(
            wid, f"policy:{record.step}", action.target, decision.verdict, decision.reason
        )
        if decision.verdict == "deny":
            record.status = "refused"
            return "refused", decision.reason
        if decision.verdict == "needs_approval":
            timeout_s = decision.approval_timeout_s or self._input.policy.approval_timeout_s
            stop = await self._await_approval(wid, record, timeout_s)
            if stop is not None:
                return stop
            if record.status == "rejected":
                return None
        self._phase = f"step {record.step}: acting"
        request = ExecuteRequest(
            idempotency_key=f"{wid}:{record.step}",
            workflow_id=wid,
            step=record.step,
            action=action,
            service=plan.service,
        )
        outcome = await workflow.execute_activity(
            "execute_action",
            request,
            result_type=ActionOutcome,
            start_to_close_timeout=_ACT,
            heartbeat_timeout=_HEARTBEAT,
            retry_policy=_RETRY,
        )
        # execute_action audits its own result (key action:<step>), in the same attempt
        record.outcome = outcome
        if not outcome.success:
            record.status = "failed"
            return "failed", f"step {record.step} failed: {outcome.detail}"
        record.status = "done"
        if outcome.compensable:
            saga.append(request)
        self._report_soon()
        return None

    async def _await_approval(
        self, wid: str, record: StepRecord, timeout_s: float
    ) -> tuple[HealingOutcome, str] | None:
        record.status = "awaiting_approval"
        self._pending = record.step
        self._phase = f"step {record.step}: awaiting approval"
        await self._report()
        await self._audit(
            wid,
            f"approval-requested:{record.step}",
            record.action.target,
            "pending",
            f"waiting up to {timeout_s:.0f}s for approval",
        )
        try:
            await workflow.wait_condition(
                lambda: record.step in self._decisions, timeout=timedelta(seconds=timeout_s)
            )
        except TimeoutError:
            self._pending = None
            record.status = "escalated"
            await self._audit(
                wid,
                f"approval-timeout:{record.step}",
                record.action.target,
                "escalated",
                f"no decision within {timeout_s:.0f}s; not acting",
            )
            return "escalated", f"step {record.step} got no approval within {timeout_s:.0f}s"
        self._pending = None
        await self._report()
        decision = self._decisions[record.step]
        record.approval = decision
        verdict = "approved" if decision.approved else "rejected"
        await self._audit(
            wid,
            f"approval:{record.step}",
            record.action.target,
            verdict,
            f"{decision.approver}: {decision.reason}",
        )
        if not decision.approved:
            record.status = "rejected"
        return None

    async def _compensate(self, wid: str, saga: list[ExecuteRequest]) -> None:
        self._phase = "compensating"
        for request in reversed(saga):
            outcome = await workflow.execute_activity(
                "compensate_action",
                request,
                result_type=ActionOutcome,
                start_to_close_timeout=_ACT,
                heartbeat_timeout=_HEARTBEAT,
                retry_policy=_RETRY,
            )
            self._compensations.append(CompensationRecord(step=request.step, outcome=outcome))
            await self._audit(
                wid,
                f"compensation:{request.step}",
                request.action.target,
                "succeeded" if outcome.success else "failed",
                outcome.detail,
            )

    async def _audit(
        self, wid: str, key: str, target: str | None, decision: str, detail: str
    ) -> None:
        await self._call(
            "record_audit",
            AuditRequest(
                key=key,
                actor="aiops-healer",
                action=key.split(":")[0],
                target=target,
                decision=decision,
                details={"detail": detail},
                workflow_id=wid,
            ),
        )

    async def _call(self, activity_name: str, arg: object) -> None:
        # Short database bookkeeping runs as a local activity: no server round trip per call.
        await workflow.execute_local_activity(
            activity_name, arg, start_to_close_timeout=_QUICK, retry_policy=_RETRY
        )
