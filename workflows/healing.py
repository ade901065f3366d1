"""HealingWorkflow: run a plan's actions within the policy, with approvals and a saga."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

from workflows.notifying import send_notification

with workflow.unsafe.imports_passed_through():
    from aiops.actions.base import ActionOutcome
    from aiops.actions.executor import ExecuteRequest
    from aiops.models.healing import (
        ApprovalCheck,
        ApprovalCheckRequest,
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
    from aiops.models.incident import SourceResolved
    from aiops.notify.models import NotificationKind, NotifyRequest
    from aiops.policy import evaluate
    from aiops.policy.models import PolicyContext
    from aiops.saga import after_compensation, hard_failure_detail
    from workflows.notifying import send_notification

_QUICK = timedelta(seconds=30)
_ACT = timedelta(minutes=5)
_HEARTBEAT = timedelta(seconds=10)
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
# Runs that started before signed approvals (tests/histories) keep their old decision
# handling when replayed; every new run takes the checked path.
SIGNED_APPROVALS = "signed-approvals"
NOTIFICATIONS = "notifications"
# Runs from before it failed outright when a step raised; every new run rolls back whatever
# way a step fails, and its undo and bookkeeping outlast an outage of the database.
COMPENSATE_ALWAYS = "compensate-on-any-failure"
# An undo must not give up while the database or the target is down for a while: retried
# with a capped backoff for hours, not 5 attempts in 15 s.
_UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)
_UNDO_WITHIN = timedelta(hours=6)
# Runs from before it verified and closed the remediation with two regular activities, two
# more round trips to the server each; every new run probes the health endpoint once and
# closes as local activities, in the workflow task that has the last step's result, and
# falls back to the full verification and the lasting close when that is not enough.
FINISH_IN_TASK = "verify-and-close-in-task"
# Runs from before it wrote a marker (and a TemporalChangeVersion upsert) for each patch
# above; every new run writes this one and takes all of their new paths.
ONE_MARKER = "patches-in-one-marker"
# What the one marker stands for; a later change gets a patch of its own, asked with
# workflow.patched (asked with _has, every run from the one marker on would replay as if it
# had taken the new path).
_FOLDED = frozenset({SIGNED_APPROVALS, NOTIFICATIONS, COMPENSATE_ALWAYS, FINISH_IN_TASK})
_ONCE = RetryPolicy(maximum_attempts=1)
_CLOSE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)
# what ends a step without an outcome: out of retries, timed out, cancelled. FailureError,
# not only ActivityError: a local activity out of retries can surface as its own failure.
_HARD_FAILURES = (FailureError, TimeoutError, asyncio.CancelledError)


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
        self._checked: bool | None = None
        self._refusals = 0
        self._source_resolved: SourceResolved | None = None
        self._notifies = False
        self._notifying: list[asyncio.Task[None]] = []
        self._approval_deadline: datetime | None = None
        self._always_compensates = False
        self._in_flight: ExecuteRequest | None = None
        self._finishes_in_task = False
        self._last_step: str | None = None
        self._unreported = False
        self._current: bool | None = None

    def _has(self, patch: str) -> bool:
        """Whether this run takes `patch`'s new path (one the marker stands for): every run
        with the one marker does; an older run as its own marker says."""
        assert patch in _FOLDED, f"{patch} is not folded into {ONE_MARKER}"
        if self._current is None:
            self._current = workflow.patched(ONE_MARKER)
        return self._current or workflow.patched(patch)

    def _checks_approvals(self) -> bool:
        """Whether this run checks decisions (signed grants, the pending step only) and
        stops on a rejection."""
        if self._checked is None:
            self._checked = self._has(SIGNED_APPROVALS)
        return self._checked

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
    async def approve(self, decision: ApprovalDecision) -> None:
        # a signal cannot be refused: one that does not count is dropped, audited and logged
        if not self._checks_approvals():
            step = self._step_for(decision)
            if not decision.approver.strip() or step is None or step not in self._step_ids():
                workflow.logger.warning("ignored approval %s: no such pending step", decision)
                return
            self._decisions.setdefault(step, decision)
            return
        try:
            await self._decide(decision)
        except FailureError as refused:
            # refused, or check_approval out of retries: either way a signal must never
            # fail the plan (whose done steps would then never be rolled back)
            workflow.logger.warning("ignored approval by %s: %s", decision.approver, refused)

    @workflow.signal
    def source_resolved(self, note: SourceResolved) -> None:
        """The problem resolved at its source: a step waiting for approval stops waiting."""
        self._source_resolved = self._source_resolved or note

    @workflow.update
    async def decide(self, decision: ApprovalDecision) -> str:
        if self._checks_approvals():
            return await self._decide(decision)
        step = self._step_for(decision)
        assert step is not None
        self._decisions.setdefault(step, decision)
        verdict = "approved" if decision.approved else "rejected"
        return f"step {step} {verdict} by {decision.approver}"

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        if not decision.approver.strip() and decision.grant is None:
            raise ValueError("approver is required")
        step = self._step_for(decision)
        if step is None:
            raise ValueError("no action is waiting for approval; name one with action_id")
        if step not in self._step_ids():
            raise ValueError(f"unknown action_id {step!r}; the plan has {self._step_ids()}")
        if step in self._decisions:
            raise ValueError(f"step {step} was already decided")
        if self._checked and step != self._pending:
            raise ValueError(_not_pending(step, self._pending))

    async def _decide(self, decision: ApprovalDecision) -> str:
        """Record a decision on the pending step if it counts (check_approval says: a
        signed grant for exactly this step and policy decision, or any named approver in
        open mode); otherwise audit the refusal and raise."""
        assert self._input is not None
        wid = workflow.info().workflow_id
        step = self._step_for(decision)
        self._refusals += 1
        key = f"approval-check:{step}:{self._refusals}"  # the audit row's, if refused
        if step is None or step != self._pending or step in self._decisions:
            why = (
                f"step {step} was already decided"
                if step is not None and step in self._decisions
                else _not_pending(step, self._pending)
            )
            await self._audit(wid, key, None, "refused", f"{decision.approver}: {why}")
            raise ApplicationError(why, type="ApprovalRefused", non_retryable=True)
        record = next(r for r in self._steps if r.step == step)
        check = await workflow.execute_local_activity(
            "check_approval",
            ApprovalCheckRequest(
                workflow_id=wid,
                step=step,
                decision_id=record.decision.decision_id if record.decision else None,
                action=record.action,
                service=self._input.plan.service,
                decision=decision,
                key=key,
            ),
            result_type=ApprovalCheck,
            start_to_close_timeout=_QUICK,
            retry_policy=_RETRY,
        )
        if not check.accepted:
            raise ApplicationError(
                f"refused: {check.detail}", type="ApprovalRefused", non_retryable=True
            )
        if step != self._pending or step in self._decisions:  # decided or timed out meanwhile
            raise ApplicationError(_not_pending(step, self._pending), type="ApprovalRefused")
        self._decisions[step] = decision.model_copy(update={"approver": check.approver})
        verdict = "approved" if decision.approved else "rejected"
        return f"step {step} {verdict} by {check.approver}"

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
        self._checks_approvals()
        self._notifies = self._has(NOTIFICATIONS)
        self._always_compensates = self._has(COMPENSATE_ALWAYS)
        self._finishes_in_task = self._has(FINISH_IN_TASK)
        wid = workflow.info().workflow_id
        plan = input.plan
        self._steps = [StepRecord(step=p.step, action=p.action) for p in plan.actions]
        await self._call(
            "open_remediation", RemediationRequest(workflow_id=wid, service=plan.service)
        )
        saga: list[ExecuteRequest] = []
        try:
            try:
                outcome, detail, verified = await self._run_plan(wid, saga)
            except _HARD_FAILURES as error:
                if not self._always_compensates:
                    raise
                outcome, detail, verified = "failed", self._failed_hard(error, saga), None
            if outcome in ("failed", "refused", "escalated", "rejected") and saga:
                await self._compensate(wid, saga)
                if self._always_compensates:
                    outcome = after_compensation(outcome, self._compensations)
                elif outcome == "failed":
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
            await asyncio.gather(*self._reporting, *self._notifying, return_exceptions=True)
            await self._close(
                RemediationRequest(workflow_id=wid, service=plan.service, outcome=self._outcome)
            )

    async def _run_plan(
        self, wid: str, saga: list[ExecuteRequest]
    ) -> tuple[HealingOutcome, str, bool | None]:
        """Run the steps in order, then verify; (outcome, detail, verified)."""
        assert self._input is not None
        plan = self._input.plan
        ordered = sorted(self._steps, key=lambda r: r.action.order)
        self._last_step = ordered[-1].step if ordered else None
        for record in ordered:
            stop = await self._run_step(wid, record, saga)
            if stop is not None:
                return stop[0], stop[1], None
        if any(r.status == "would_run" for r in self._steps):
            return (
                "shadow",
                "shadow mode: would run "
                + ", ".join(
                    f"step {r.step} ({r.action.action_type} on {r.action.target})"
                    for r in self._steps
                    if r.status == "would_run"
                ),
                None,
            )
        self._phase = "verifying"
        check = await self._verify(
            VerifyRequest(service=plan.service, timeout_s=self._input.verify_timeout_s)
        )
        await self._audit(wid, "verify", plan.service, str(check.healthy), check.detail)
        if check.healthy is False:
            return "failed", f"verification failed: {check.detail}", check.healthy
        return "healed", check.detail, check.healthy

    async def _verify(self, request: VerifyRequest) -> VerifyResult:
        """The service's health after the plan: a first probe in this workflow task; the
        full wait (an activity that polls and heartbeats) only if that probe was not
        healthy, or could not run."""
        if self._finishes_in_task:
            try:
                first: VerifyResult = await workflow.execute_local_activity(
                    "probe_service_health",
                    request,
                    result_type=VerifyResult,
                    start_to_close_timeout=_QUICK,
                    retry_policy=_ONCE,
                )
            except FailureError as error:
                workflow.logger.warning("first health probe failed: %s", _cause(error))
            else:
                if first.healthy is not False:
                    return first
            if self._unreported:  # the parent shows the done steps while this waits
                self._unreported = False
                self._report_soon()
        check: VerifyResult = await workflow.execute_activity(
            "verify_service_health",
            request,
            result_type=VerifyResult,
            start_to_close_timeout=timedelta(seconds=request.timeout_s + 30),
            heartbeat_timeout=timedelta(seconds=15),
            retry_policy=_RETRY,
        )
        return check

    async def _close(self, request: RemediationRequest) -> None:
        """Record the remediation's end: in this workflow task when the database answers
        at once, else as before (lasting: retried by the server for hours)."""
        if self._finishes_in_task:
            try:
                await workflow.execute_local_activity(
                    "close_remediation",
                    request,
                    start_to_close_timeout=_QUICK,
                    retry_policy=_CLOSE_RETRY,
                )
                return
            except FailureError as error:
                workflow.logger.warning("close_remediation kept for later: %s", _cause(error))
        await self._call("close_remediation", request, lasting=self._always_compensates)

    def _failed_hard(self, error: BaseException, saga: list[ExecuteRequest]) -> str:
        """A step raised (out of retries, timed out, cancelled): the step in flight may have
        acted before its bookkeeping failed, so it is undone too; the executor undoes only
        what it recorded as a compensable success."""
        workflow.logger.warning("healing stopped by %r; rolling back", error)
        flying = self._in_flight
        if flying is None:
            return hard_failure_detail(None, error)
        self._in_flight = None
        record = next(r for r in self._steps if r.step == flying.step)
        record.status = "failed"
        if flying not in saga:
            saga.append(flying)
        return hard_failure_detail(flying.step, error)

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
        decision = evaluate(self._input.policy, action, context).model_copy(
            update={"decision_id": str(workflow.uuid4())}
        )
        record.decision = decision
        await self._audit(
            wid, f"policy:{record.step}", action.target, decision.verdict, decision.reason
        )
        if decision.verdict == "deny":
            record.status = "refused"
            return "refused", decision.reason
        if context.mode == "shadow":
            # what would run, and on what terms; no approval is asked, nothing acts
            record.status = "would_run"
            await self._audit(
                wid, f"would-run:{record.step}", action.target, decision.verdict, decision.reason
            )
            return None
        if decision.verdict == "needs_approval":
            timeout_s = decision.approval_timeout_s or self._input.policy.approval_timeout_s
            stop = await self._await_approval(wid, record, timeout_s)
            if stop is not None:
                return stop
            if record.status == "rejected":
                if not self._checks_approvals():
                    return None
                assert record.approval is not None
                return "rejected", (
                    f"step {record.step} rejected by {record.approval.approver}"
                    + (f": {record.approval.reason}" if record.approval.reason else "")
                )
        self._phase = f"step {record.step}: acting"
        approval = record.approval
        request = ExecuteRequest(
            idempotency_key=f"{wid}:{record.step}",
            workflow_id=wid,
            step=record.step,
            action=action,
            service=plan.service,
            decision_id=decision.decision_id,
            grant=approval.grant if approval else None,
            approver=approval.approver if approval else None,
        )
        self._in_flight = request
        outcome = await workflow.execute_activity(
            "execute_action",
            request,
            result_type=ActionOutcome,
            start_to_close_timeout=_ACT,
            heartbeat_timeout=_HEARTBEAT,
            retry_policy=_RETRY,
        )
        self._in_flight = None
        # execute_action audits its own result (key action:<step>), in the same attempt
        record.outcome = outcome
        if outcome.data.get("refused"):
            # the check where actions run said no (the server's policy, the target, the
            # parameters, the approval): nothing acted
            record.status = "refused"
            return "refused", f"step {record.step} refused: {outcome.detail}"
        if not outcome.success:
            record.status = "failed"
            return "failed", f"step {record.step} failed: {outcome.detail}"
        record.status = "done"
        if outcome.compensable:
            saga.append(request)
        if self._finishes_in_task and record.step == self._last_step:
            # the result tells the parent, unless verification has to wait (_verify): a
            # report would cost this run one more round trip to the server at its end
            self._unreported = True
        else:
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
        if not await self._decided_within(record, timeout_s):
            self._pending = None
            record.status = "escalated"
            await self._audit(
                wid,
                f"approval-timeout:{record.step}",
                record.action.target,
                "escalated",
                f"no decision within {timeout_s:.0f}s; not acting",
            )
            if self._notifies:
                self._notify(record, NotificationKind.APPROVAL_TIMEOUT, timeout_s)
            return "escalated", f"step {record.step} got no approval within {timeout_s:.0f}s"
        self._pending = None
        await self._report()
        resolved = self._source_resolved
        if record.step not in self._decisions and resolved is not None:
            record.status = "skipped"
            await self._audit(
                wid,
                f"approval-moot:{record.step}",
                record.action.target,
                "skipped",
                f"{resolved.source} resolved the problem while step {record.step} waited; "
                "not acting",
            )
            return "resolved_by_source", (
                f"{resolved.source} resolved the problem before step {record.step} was approved"
            )
        decision = self._decisions[record.step]
        record.approval = decision
        verdict = "approved" if decision.approved else "rejected"
        await self._audit(
            wid,
            f"approval:{record.step}",
            record.action.target,
            verdict,
            f"{decision.approver}: {decision.reason}",
            # who decided is the row's actor: details are masked, an approver's name is not
            actor=decision.approver,
        )
        if not decision.approved:
            record.status = "rejected"
        return None

    async def _decided_within(self, record: StepRecord, timeout_s: float) -> bool:
        """Wait for a decision (or the source resolving the problem); on the notifying
        path people are told at the start and reminded at half the timeout."""

        def settled() -> bool:
            return record.step in self._decisions or self._source_resolved is not None

        waits = [timeout_s]
        if self._notifies:
            self._notify(record, NotificationKind.APPROVAL_REQUESTED, timeout_s)
            waits = [timeout_s / 2, timeout_s / 2]
        for i, wait_s in enumerate(waits):
            try:
                await workflow.wait_condition(settled, timeout=timedelta(seconds=wait_s))
                return True
            except TimeoutError:
                if i + 1 < len(waits):
                    self._notify(record, NotificationKind.APPROVAL_REMINDER, timeout_s)
        return False

    def _notify(self, record: StepRecord, kind: NotificationKind, timeout_s: float) -> None:
        """Tell people, without waiting on it: a channel that is down costs a log line,
        never the plan."""
        assert self._input is not None
        plan = self._input.plan
        if self._approval_deadline is None or kind == NotificationKind.APPROVAL_REQUESTED:
            self._approval_deadline = workflow.now() + timedelta(seconds=timeout_s)
        request = NotifyRequest(
            kind=kind,
            key=f"{kind.value}:{record.step}",
            incident_id=self._input.incident_id,
            workflow_id=workflow.info().workflow_id,
            service=plan.service,
            step=record.step,
            action=record.action,
            decision_id=record.decision.decision_id if record.decision else None,
            why=record.decision.reason if record.decision else "",
            plan_description=plan.description,
            approval_timeout_s=timeout_s,
            expires_at=self._approval_deadline,
        )
        self._notifying.append(asyncio.create_task(send_notification(request)))

    async def _compensate(self, wid: str, saga: list[ExecuteRequest]) -> None:
        self._phase = "compensating"
        if self._always_compensates:
            # a cancellation of the run must not stop the rollback half way
            await _uncancellable(self._undo_all(wid, saga))
            return
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

    async def _undo_all(self, wid: str, saga: list[ExecuteRequest]) -> None:
        """Undo in reverse, each undo retried for hours; one that still fails is recorded
        as not undone and the others are still tried."""
        for request in reversed(saga):
            try:
                outcome = await workflow.execute_activity(
                    "compensate_action",
                    request,
                    result_type=ActionOutcome,
                    start_to_close_timeout=_ACT,
                    schedule_to_close_timeout=_UNDO_WITHIN,
                    heartbeat_timeout=_HEARTBEAT,
                    retry_policy=_UNDO_RETRY,
                )
            except FailureError as error:
                outcome = ActionOutcome(success=False, detail=f"not undone: {_cause(error)}")
            self._compensations.append(CompensationRecord(step=request.step, outcome=outcome))
            await self._audit(
                wid,
                f"compensation:{request.step}",
                request.action.target,
                "succeeded" if outcome.success else "failed",
                outcome.detail,
                lasting=True,
            )

    async def _audit(
        self,
        wid: str,
        key: str,
        target: str | None,
        decision: str,
        detail: str,
        actor: str = "aiops-healer",
        *,
        lasting: bool = False,
    ) -> None:
        await self._call(
            "record_audit",
            AuditRequest(
                key=key,
                actor=actor,
                action=key.split(":")[0],
                target=target,
                decision=decision,
                details={"detail": detail},
                workflow_id=wid,
            ),
            lasting=lasting,
        )

    async def _call(self, activity_name: str, arg: object, *, lasting: bool = False) -> None:
        if lasting:
            # the rollback's own records: a regular activity whose retries the server keeps
            # for hours, past an outage of the database; one that still fails then is a log
            # line, never the rollback's result
            try:
                await workflow.execute_activity(
                    activity_name,
                    arg,
                    start_to_close_timeout=_QUICK,
                    schedule_to_close_timeout=_UNDO_WITHIN,
                    retry_policy=_UNDO_RETRY,
                )
            except FailureError as error:
                workflow.logger.error("%s not recorded: %s", activity_name, _cause(error))
            return
        # Short database bookkeeping runs as a local activity: no server round trip per call.
        await workflow.execute_local_activity(
            activity_name, arg, start_to_close_timeout=_QUICK, retry_policy=_RETRY
        )


async def _uncancellable(work: Awaitable[None]) -> None:
    """Run work to its end even if the workflow is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            await asyncio.shield(task)
            return
        except asyncio.CancelledError:
            if task.done():
                raise


def _not_pending(step: str | None, pending: str | None) -> str:
    if pending is None:
        return "no step is waiting for approval"
    return f"step {step} is not the one waiting for approval (step {pending} is)"


def _cause(error: FailureError) -> BaseException:
    return error.cause or error
