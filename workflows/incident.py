"""IncidentWorkflow: one run per problem fingerprint, from detection to learning.

The listener signal-with-starts it (`observe`) with one coalesced Observation per batch, so
an event storm is one incident with a counter. The run records the problem in the
knowledge graph, then runs DiagnosisWorkflow, HealingWorkflow and LearningWorkflow as
children, and stays open for a cool-down window so late duplicates do not open a new
incident; a recurrence after that starts a new run.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.workflow import ParentClosePolicy

from workflows.notifying import send_notification

with workflow.unsafe.imports_passed_through():
    from aiops import search_attributes as sa
    from aiops.events.envelope import Event
    from aiops.incident_context import IncidentContext
    from aiops.incident_rules import (
        continue_as_new_due,
        failed_solution,
        ladder_stop,
        retry_due,
    )
    from aiops.models.diagnosis import Diagnosis, DiagnosisInput
    from aiops.models.healing import (
        ApprovalDecision,
        ForwardDecisionRequest,
        ForwardedDecision,
        HealingInput,
        HealingResult,
        HealingStatus,
    )
    from aiops.models.incident import (
        EscalationRequest,
        IncidentInput,
        IncidentStatus,
        Observation,
        PlanRung,
        ProblemCategory,
        ProblemRecordRequest,
        ProblemRef,
        ProblemSeverity,
        SourceResolved,
    )
    from aiops.models.learning import LearningInput, LearningResult
    from aiops.modes.models import IncidentMode
    from aiops.notify.models import NotificationKind, NotifyRequest
    from aiops.policy.models import Policy
    from aiops.silences.models import SilenceCheck, SilenceVerdict

_QUICK = timedelta(seconds=60)
_RETRY = RetryPolicy(maximum_attempts=10)
# Runs from before it (tests/histories) replay with the old signal forwarding.
FORWARD_DECISIONS = "forward-decisions-as-updates"
NOTIFICATIONS = "notifications"
SILENCES = "silences"
INCIDENT_MODE = "incident-mode"
# Runs from before it failed with their child and skipped the cool-down; every new run
# cools down whatever the outcome, tries again while the problem goes on, and continues
# as new on a history budget.
PERSISTS = "incident-persists"
# After a failed or rolled-back plan, the next known fix is tried in the same incident.
LADDER = "escalation-ladder"
# Runs from before it scheduled record_problem in the task that starts the diagnosis.
RECORD_AFTER_CHILD_STARTS = "record-after-diagnosis-starts"
# Runs from before it recorded the problem beside the diagnosis and waited for both.
RECORD_AFTER_HEALING = "record-after-healing"
# Runs from before it read silences, the mode and the policy in three local activities (the
# last two after the diagnosis, on the way to the fix). Every new run reads them in one
# (incident_context) before it diagnoses, and a retry reads them again (a silence set
# meanwhile holds it). This patch also stands for every patch above: a run that has it
# takes all of their new paths without a marker (and a TemporalChangeVersion upsert) each.
CONTEXT_FIRST = "context-first"
# What context-first stands for. A later change gets a patch of its own, asked with
# workflow.patched: were it asked with _has, every run from context-first on would replay
# as if it had taken the new path.
_FOLDED = frozenset(
    {
        FORWARD_DECISIONS,
        NOTIFICATIONS,
        SILENCES,
        INCIDENT_MODE,
        PERSISTS,
        LADDER,
        RECORD_AFTER_CHILD_STARTS,
        RECORD_AFTER_HEALING,
    }
)


@workflow.defn(name="IncidentWorkflow")
class IncidentWorkflow:
    @workflow.init
    def __init__(self, incident: IncidentInput) -> None:
        self._status = (
            incident.carried.model_copy()
            if incident.carried is not None
            else IncidentStatus(
                fingerprint=incident.fingerprint or workflow.info().workflow_id,
                template=incident.template or "",
                category=incident.category,
                severity=incident.severity,
                # as the router decides: an event that names no service speaks for its source
                service=incident.service or incident.source,
                replay=incident.replay,
                pattern_id=incident.pattern_id,
            )
        )
        self._fresh = False
        self._forwards: bool | None = None
        self._notifies = False
        self._notifying: list[asyncio.Task[None]] = []
        self._mode_searchable = False
        self._persists = False
        self._note = ""
        # the problem this attempt records before it learns (record-after-healing)
        self._to_record: ProblemRecordRequest | None = None
        self._current: bool | None = None
        # the policy read with the context, for this attempt's first plan (context-first)
        self._context_policy: Policy | None = None

    def _has(self, patch: str) -> bool:
        """Whether this run takes `patch`'s new path (one of those context-first stands
        for): every run with context-first does (one marker for all); an older run as its
        own marker says."""
        assert patch in _FOLDED, f"{patch} is not folded into {CONTEXT_FIRST}"
        if self._current is None:
            self._current = workflow.patched(CONTEXT_FIRST)
        return self._current or workflow.patched(patch)

    def _forwards_updates(self) -> bool:
        if self._forwards is None:
            self._forwards = self._has(FORWARD_DECISIONS)
        return self._forwards

    # --- signals, updates, queries --------------------------------------------------------

    @workflow.signal
    def observe(self, observation: Observation) -> None:
        status = self._status
        status.observations += 1
        status.events += observation.count
        status.template = status.template or observation.template
        status.category = status.category or observation.category
        status.service = status.service or observation.service
        status.pattern_id = status.pattern_id or observation.pattern_id
        if status.severity is None or observation.severity.rank > status.severity.rank:
            status.severity = observation.severity
        if status.first_seen is None or observation.first_seen < status.first_seen:
            status.first_seen = observation.first_seen
        if status.last_seen is None or observation.last_seen >= status.last_seen:
            status.last_seen = observation.last_seen
            status.last_sample = observation.sample
        self._fresh = True

    @workflow.signal
    async def source_resolved(self, note: SourceResolved) -> None:
        """The alert's source says it resolved: recorded; a step still waiting for approval
        stops waiting and nothing more acts (the healing child is told)."""
        status = self._status
        if status.source_resolved_at is not None:
            return
        status.source_resolved_at = note.at
        status.source_resolved_by = note.source
        healing = status.healing_workflow_id
        if healing is not None and status.healing_result is None:
            try:
                await workflow.get_external_workflow_handle(healing).signal("source_resolved", note)
            except Exception as error:  # closed meanwhile: nothing left to stop
                workflow.logger.info("source_resolved not forwarded to %s: %s", healing, error)

    @workflow.signal
    def healing_progress(self, progress: HealingStatus) -> None:
        self._status.healing = progress
        self._status.pending_approval = progress.pending_approval

    @workflow.signal
    async def approve(self, decision: ApprovalDecision) -> None:
        """Forwarded to the running HealingWorkflow, which checks, records and audits it."""
        if self._status.healing_workflow_id is None:
            workflow.logger.warning("approval %s ignored: nothing is being healed", decision)
            return
        if not self._forwards_updates():
            await workflow.get_external_workflow_handle(self._status.healing_workflow_id).signal(
                "approve", decision
            )
            return
        if self._status.healing_result is not None:
            workflow.logger.warning("approval %s ignored: healing has finished", decision)
            return
        # through the child's decide update: a child that has closed meanwhile, or that
        # refuses the decision, costs a log line, never this incident
        try:
            forwarded = await self._forward(decision)
        except FailureError as error:  # forward_decision out of retries
            workflow.logger.warning("approval %s not forwarded: %s", decision, error)
            return
        if not forwarded.accepted:
            workflow.logger.warning("approval %s not taken: %s", decision, forwarded.message)

    @workflow.update
    async def decide(self, decision: ApprovalDecision) -> str:
        assert self._status.healing_workflow_id is not None
        step = decision.action_id or self._status.pending_approval
        if not self._forwards_updates():
            await workflow.get_external_workflow_handle(self._status.healing_workflow_id).signal(
                "approve", decision.model_copy(update={"action_id": step})
            )
            verdict = "approved" if decision.approved else "rejected"
            return f"step {step} {verdict} by {decision.approver}"
        forwarded = await self._forward(decision.model_copy(update={"action_id": step}))
        if not forwarded.accepted:
            raise ApplicationError(forwarded.message, type="ApprovalRefused", non_retryable=True)
        return forwarded.message

    async def _forward(self, decision: ApprovalDecision) -> ForwardedDecision:
        assert self._status.healing_workflow_id is not None
        forwarded: ForwardedDecision = await workflow.execute_activity(
            "forward_decision",
            ForwardDecisionRequest(
                healing_workflow_id=self._status.healing_workflow_id, decision=decision
            ),
            result_type=ForwardedDecision,
            start_to_close_timeout=_QUICK,
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return forwarded

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        if not decision.approver.strip() and decision.grant is None:
            raise ValueError("approver is required")
        if self._status.healing_workflow_id is None or self._status.plan is None:
            raise ValueError(f"nothing awaits approval (phase {self._status.phase})")
        if self._forwards and self._status.healing_result is not None:
            raise ValueError(f"healing has finished ({self._status.healing_result.outcome})")
        steps = [p.step for p in self._status.plan.actions]
        step = decision.action_id or self._status.pending_approval
        if step is None:
            raise ValueError("no action is waiting for approval; name one with action_id")
        if step not in steps:
            raise ValueError(f"unknown action_id {step!r}; the plan has {steps}")

    @workflow.query
    def status(self) -> IncidentStatus:
        return self._status

    # --- the incident ---------------------------------------------------------------------

    @workflow.run
    async def run(self, incident: IncidentInput) -> IncidentStatus:
        self._forwards_updates()
        self._notifies = self._has(NOTIFICATIONS)
        self._persists = self._has(PERSISTS)
        if self._status.events == 0:
            # started by hand (no signal came with the start): the input is the first event
            self.observe(_observation_from(incident, workflow.now()))
        if not self._status.resolved:
            if self._has(SILENCES):
                await self._wait_out_silences(incident)
            await self._attempt(incident)
        if self._persists:
            await self._watch(incident)
        else:
            await self._cool_down(incident)
        self._status.open = False
        return self._status

    async def _attempt(self, incident: IncidentInput) -> None:
        """Diagnose, heal, learn; a child or activity that fails for good makes the outcome
        `failed`, never the incident (which must still absorb its duplicates)."""
        try:
            await self._handle(incident)
        except FailureError as error:  # a child or activity out of retries, however surfaced
            if not self._persists:
                raise
            workflow.logger.warning("incident attempt failed: %r", error)
            if self._to_record is not None:
                # record-after-healing: what failed came before the problem was recorded,
                # and a problem is recorded whatever became of its fix
                with contextlib.suppress(FailureError):
                    await self._recorded()
            status = self._status
            status.outcome = "failed"
            status.pending_approval = None
            self._notify(NotificationKind.REMEDIATION_FAILED, f"the attempt failed: {error}")
            await asyncio.gather(*self._notifying, return_exceptions=True)
            status.resolved = True
            status.resolved_at = workflow.now()
            self._set_phase("cooling_down", outcome="failed")

    async def _watch(self, incident: IncidentInput) -> None:
        """The cool-down, window by window: a window without events closes the incident;
        events in a window are counted here (no new incident), and after a failed fix or an
        unknown problem they mean it goes on: alert again and try again, a bounded number
        of times. The run continues as new when its history reaches its budget."""
        status = self._status
        window = timedelta(seconds=incident.cool_down_s)
        while True:
            seen = status.events
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._history_full(incident), timeout=window)
            if self._history_full(incident):
                await self._continue_as_new(incident)
            persisted = status.events > seen and status.source_resolved_at is None
            if not persisted:
                return
            if retry_due(status.outcome, persisted, status.retries, incident.max_retries):
                await self._retry(incident, status.events - seen)

    async def _continue_as_new(self, incident: IncidentInput) -> NoReturn:
        """A new run, carrying the status, once every handler in flight has finished."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._status.runs += 1
        workflow.continue_as_new(incident.model_copy(update={"carried": self._status}))

    def _history_full(self, incident: IncidentInput) -> bool:
        info = workflow.info()
        return continue_as_new_due(
            info.get_current_history_length(),
            incident.history_budget,
            info.is_continue_as_new_suggested(),
        )

    async def _retry(self, incident: IncidentInput, new_events: int) -> None:
        """The problem went on after an attempt that did not fix it: people are told again
        (the attempt's own notification says so) and it is diagnosed again, without the fix
        that just failed."""
        status = self._status
        failed = failed_solution(status.outcome, status.plan.solution_id if status.plan else None)
        if failed is not None and failed not in status.excluded_solutions:
            status.excluded_solutions.append(failed)
        self._note = (
            f"still happening ({new_events} more event(s) after {status.outcome}); "
            f"attempt {status.retries + 2} of {incident.max_retries + 1}"
        )
        status.retries += 1
        status.resolved, status.resolved_at = False, None
        status.diagnosis = status.plan = status.learning = None
        status.healing_workflow_id = status.healing = status.healing_result = None
        status.pending_approval = None
        status.rungs = []
        self._notifying = []
        if self._current:
            await self._wait_out_silences(incident)
        await self._attempt(incident)

    async def _wait_out_silences(self, incident: IncidentInput) -> None:
        """While a silence or maintenance window holds the problem, neither act nor notify
        (the events are still counted); when it ends with the problem still there (not
        resolved at its source), go on. A new run (context-first) reads its context even
        when the alert resolved at its source already, audits each attempt's hold, and
        continues as new when a storm during a long silence fills its history."""
        status = self._status
        wid = workflow.info().workflow_id
        read = bool(self._current)
        while status.source_resolved_at is None or read:
            read = False
            sample = status.last_sample
            labels = sample.payload.get("labels") if sample else None
            check = SilenceCheck(
                service=status.service,
                event_type=sample.event_type if sample else None,
                source=sample.source if sample else None,
                severity=sample.severity.value if sample and sample.severity else None,
                labels={str(k): str(v) for k, v in labels.items()}
                if isinstance(labels, dict)
                else {},
                key=f"silenced:{self._tag() if self._current else workflow.info().run_id[:8]}",
                workflow_id=wid,
            )
            if self._current:
                context = await workflow.execute_local_activity(
                    "incident_context",
                    check,
                    result_type=IncidentContext,
                    start_to_close_timeout=_QUICK,
                    retry_policy=_RETRY,
                )
                verdict = context.silence
                # for people (status, memo, AiopsMode); where actions run it is read again
                status.mode = context.mode.mode
                self._mode_searchable = context.mode.searchable
                self._context_policy = context.policy  # None while silenced
            else:
                verdict = await workflow.execute_local_activity(
                    "check_silence",
                    check,
                    result_type=SilenceVerdict,
                    start_to_close_timeout=_QUICK,
                    retry_policy=_RETRY,
                )
            if not verdict.silenced or verdict.until is None:
                status.silenced_until = None
                return
            if self._current and status.source_resolved_at is not None:
                return  # resolved at its source: nothing left to hold back
            status.silenced_until = verdict.until
            status.silence_reason = verdict.reason
            self._set_phase("silenced")
            # looked at again at least every minute: `aiops silence expire` ends it early
            left = (verdict.until - workflow.now()).total_seconds()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: (
                        status.source_resolved_at is not None
                        or bool(self._current and self._history_full(incident))
                    ),
                    timeout=timedelta(seconds=min(max(left, 1.0), 60.0)),
                )
            if self._current and self._history_full(incident):
                await self._continue_as_new(incident)

    async def _handle(self, incident: IncidentInput) -> None:
        wid = workflow.info().workflow_id
        status = self._status
        self._set_phase("detected")
        sample = status.last_sample
        text = _problem_text(status, sample)
        record = ProblemRecordRequest(
            fingerprint=status.fingerprint,
            template=status.template,
            description=text,
            service=status.service,
            category=status.category.value if status.category else None,
            severity=status.severity.value if status.severity else None,
            event_type=sample.event_type if sample else incident.event_type,
            occurrences=max(status.events - status.recorded_events, 1),
        )
        diagnosing = DiagnosisInput(
            incident_id=wid,
            text=text,
            service=status.service,
            category=status.category.value if status.category else None,
            severity=status.severity.value if status.severity else None,
            exclude_solutions=status.excluded_solutions,
        )
        diagnosis_id = f"{wid}-diagnosis-{self._tag()}"
        # Recording the problem and diagnosing it do not depend on each other (the search
        # only looks at problems that have solutions), so they run side by side. A regular
        # activity, not a local one: the SDK holds back the child's start command until a
        # running local activity finishes, which would serialise the two.
        if self._has(RECORD_AFTER_HEALING):
            # Only learning needs the problem's id, so the problem is recorded just before
            # learning: the path to the fix holds only what the fix needs. Recorded beside
            # the diagnosis, its result reached this run about when the diagnosis ended and
            # its workflow task held up the next (20-30 ms); beside the healing, its work
            # (embedding, insert, linking near-duplicates) slowed the healing's own steps
            # on the worker as much.
            self._set_phase("diagnosing")
            status.recorded_events = status.events
            self._to_record = record
            diagnosis = await workflow.execute_child_workflow(
                "DiagnosisWorkflow", diagnosing, id=diagnosis_id, result_type=Diagnosis
            )
            problem = None
        elif workflow.patched(RECORD_AFTER_CHILD_STARTS):
            # Scheduled once the child has started: a result written to this run while the
            # server starts the child holds up the child's first task (both need this
            # run's state), about 30 ms on the path to the plan.
            self._set_phase("diagnosing")
            status.recorded_events = status.events
            child = await workflow.start_child_workflow(
                "DiagnosisWorkflow", diagnosing, id=diagnosis_id, result_type=Diagnosis
            )
            problem, diagnosis = await asyncio.gather(self._record(record), child)
        else:
            recorded = self._record(record)
            self._set_phase("diagnosing")
            diagnosed = workflow.execute_child_workflow(
                "DiagnosisWorkflow", diagnosing, id=diagnosis_id, result_type=Diagnosis
            )
            status.recorded_events = status.events
            problem, diagnosis = await asyncio.gather(recorded, diagnosed)
        if not self._current and workflow.patched(INCIDENT_MODE):
            # for people (status, memo, AiopsMode); where actions run, the mode is read again
            shown = await workflow.execute_local_activity(
                "incident_mode",
                status.service,
                result_type=IncidentMode,
                start_to_close_timeout=_QUICK,
                retry_policy=_RETRY,
            )
            status.mode = shown.mode
            self._mode_searchable = shown.searchable
        if problem is not None:
            status.problem_id = problem.problem_id
        ladder_since = workflow.now() if self._has(LADDER) else None
        next_diagnosis: Diagnosis | None = diagnosis
        while next_diagnosis is not None:
            next_diagnosis = await self._rung(incident, next_diagnosis, ladder_since)
        # sent beside learning; a channel that is down never holds the incident up for long
        await asyncio.gather(*self._notifying, return_exceptions=True)
        status.resolved = True
        status.resolved_at = workflow.now()
        self._set_phase("cooling_down", outcome=status.outcome)

    async def _recorded(self) -> None:
        """This attempt's problem recorded (record-after-healing), once: its id on the
        status before learning needs it."""
        if self._to_record is not None:
            request, self._to_record = self._to_record, None
            self._status.problem_id = (await self._record(request)).problem_id

    async def _record(self, request: ProblemRecordRequest) -> ProblemRef:
        """record_problem, scheduled when first awaited (as execute_activity always was)."""
        recorded: ProblemRef = await workflow.execute_activity(
            "record_problem",
            request,
            result_type=ProblemRef,
            start_to_close_timeout=_QUICK,
            retry_policy=_RETRY,
        )
        return recorded

    async def _rung(
        self, incident: IncidentInput, diagnosis: Diagnosis, ladder_since: datetime | None
    ) -> Diagnosis | None:
        """Act on one diagnosis and learn from it. With the ladder (ladder_since set), a plan
        that failed or was rolled back is followed by the next known fix: its diagnosis is
        returned to run as the next rung; None when the attempt is over."""
        wid = workflow.info().workflow_id
        status = self._status
        sample = status.last_sample
        policy: Policy | None = None
        status.diagnosis = diagnosis
        status.plan = diagnosis.plan
        started = workflow.now()
        if diagnosis.plan is None:
            status.outcome = "unknown"
            self._set_phase("escalated", outcome="unknown")
            await workflow.execute_activity(
                "escalate",
                EscalationRequest(
                    incident_id=wid,
                    reason=diagnosis.why,
                    service=status.service,
                    causation_event_id=str(sample.id) if sample else None,
                    key=self._tag() if status.retries else None,
                ),
                start_to_close_timeout=_QUICK,
                retry_policy=_RETRY,
            )
            self._notify(NotificationKind.ESCALATED_UNKNOWN, diagnosis.why)
        elif status.source_resolved_at is not None:
            # resolved at its source while it was being diagnosed: nothing left to fix
            status.outcome = "resolved_by_source"
            self._set_phase("resolved", outcome="resolved_by_source")
        elif incident.replay:
            # a replayed event tries detection and diagnosis on history; it never acts
            status.outcome = "replay"
            self._set_phase("diagnosed", outcome="replay")
        else:
            self._set_phase("healing")
            policy, self._context_policy = self._context_policy, None
            if policy is None:  # a later plan, or a run from before context-first
                policy = await workflow.execute_local_activity(
                    "load_policy",
                    result_type=Policy,
                    start_to_close_timeout=_QUICK,
                    retry_policy=_RETRY,
                )
            healing_id = f"{wid}-healing-{self._tag()}"
            status.healing_workflow_id = healing_id
            result = await workflow.execute_child_workflow(
                "HealingWorkflow",
                HealingInput(incident_id=wid, plan=diagnosis.plan, policy=policy),
                id=healing_id,
                result_type=HealingResult,
                parent_close_policy=ParentClosePolicy.TERMINATE,
            )
            status.healing_result = result
            # what the child reported last, brought up to its end (it does not report the
            # last step when the result follows in the same workflow task)
            status.healing = HealingStatus(
                phase="done",
                plan=diagnosis.plan,
                steps=result.steps,
                compensations=result.compensations,
                outcome=result.outcome,
            )
            status.pending_approval = None
            status.outcome = result.outcome
            if result.outcome in ("failed", "compensated", "refused"):
                undone = ", ".join(
                    f"step {c.step} {'undone' if c.outcome.success else 'NOT undone'}"
                    for c in result.compensations
                )
                self._notify(
                    NotificationKind.REMEDIATION_FAILED,
                    result.detail + (f"; rolled back: {undone}" if undone else ""),
                )
            elif result.outcome == "healed":
                self._notify(NotificationKind.HEALED, result.detail)
            self._set_phase("learning", outcome=result.outcome)
        resolution = (workflow.now() - started).total_seconds()
        await self._recorded()
        learned = await workflow.execute_child_workflow(
            "LearningWorkflow",
            LearningInput(
                incident_id=wid,
                outcome=status.outcome or "unknown",
                problem_id=status.problem_id,
                solution_id=diagnosis.plan.solution_id if diagnosis.plan else None,
                service=status.service,
                resolution_time_s=resolution,
                causation_event_id=str(sample.id) if sample else None,
                correlation_id=str(sample.correlation_id)
                if sample and sample.correlation_id
                else None,
                summary=diagnosis.why,
                ballots=diagnosis.vote.ballots if diagnosis.vote else [],
                winning_plan=diagnosis.vote.winning_plan if diagnosis.vote else None,
                pattern_id=status.pattern_id,
            ),
            id=f"{wid}-learning-{self._tag()}",
            result_type=LearningResult,
        )
        status.learning = learned
        if ladder_since is None or policy is None:
            return None
        return await self._next_rung(incident, policy, ladder_since)

    async def _next_rung(
        self, incident: IncidentInput, policy: Policy, since: datetime
    ) -> Diagnosis | None:
        """After a plan that failed or was rolled back: the next known fix (diagnosed again
        without the ones that failed), or None with the incident escalated when the ladder
        is spent or knows nothing more."""
        status = self._status
        plan = status.plan
        healing = status.healing_result
        if (
            policy.max_plans_per_incident <= 1
            or status.outcome not in ("failed", "compensated")
            or plan is None
            or plan.solution_id is None  # an agent's own plan: nothing to leave out next time
            or healing is None
            or status.healing_workflow_id is None
        ):
            return None
        status.rungs.append(
            PlanRung(
                solution_id=plan.solution_id,
                description=plan.description,
                outcome=status.outcome,
                healing_workflow_id=status.healing_workflow_id,
                detail=healing.detail[:300],
            )
        )
        if plan.solution_id and plan.solution_id not in status.excluded_solutions:
            status.excluded_solutions.append(plan.solution_id)
        why = ladder_stop(
            len(status.rungs),
            policy.max_plans_per_incident,
            (workflow.now() - since).total_seconds(),
            policy.ladder_budget_s,
            status.source_resolved_at is not None,
        )
        if why is None:
            self._set_phase("diagnosing")
            wid = workflow.info().workflow_id
            diagnosis: Diagnosis = await workflow.execute_child_workflow(
                "DiagnosisWorkflow",
                DiagnosisInput(
                    incident_id=wid,
                    text=_problem_text(status, status.last_sample),
                    service=status.service,
                    category=status.category.value if status.category else None,
                    severity=status.severity.value if status.severity else None,
                    exclude_solutions=status.excluded_solutions,
                ),
                id=f"{wid}-diagnosis-{self._tag()}",
                result_type=Diagnosis,
            )
            if diagnosis.plan is not None and diagnosis.plan.solution_id not in {
                r.solution_id for r in status.rungs
            }:
                return diagnosis
            why = f"no other known fix ({diagnosis.why})"
        # one plan that failed with nothing else to try was said by its own notification
        if status.source_resolved_at is None and len(status.rungs) > 1:
            await self._fixes_exhausted(why)
        return None

    async def _fixes_exhausted(self, why: str) -> None:
        status = self._status
        tried = "; ".join(f"{r.description!r} {r.outcome}" for r in status.rungs)
        reason = f"tried {len(status.rungs)} fix(es): {tried}; stopped: {why}"
        self._set_phase("escalated", outcome=status.outcome)
        sample = status.last_sample
        await workflow.execute_activity(
            "escalate",
            EscalationRequest(
                incident_id=workflow.info().workflow_id,
                reason=reason,
                service=status.service,
                causation_event_id=str(sample.id) if sample else None,
                key=f"ladder:{self._tag()}",
            ),
            start_to_close_timeout=_QUICK,
            retry_policy=_RETRY,
        )
        self._notify(NotificationKind.FIXES_EXHAUSTED, reason)

    async def _cool_down(self, incident: IncidentInput) -> None:
        """Late duplicates are counted here instead of opening a new incident."""
        cool_down = timedelta(seconds=incident.cool_down_s)
        while True:
            self._fresh = False
            try:
                await workflow.wait_condition(lambda: self._fresh, timeout=cool_down)
            except TimeoutError:
                if not self._fresh:
                    return
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(incident.model_copy(update={"carried": self._status}))

    def _notify(self, kind: NotificationKind, detail: str) -> None:
        if not self._notifies:
            return
        status = self._status
        plan = status.plan
        request = NotifyRequest(
            kind=kind,
            key=f"{kind.value}:{self._tag()}",
            incident_id=workflow.info().workflow_id,
            workflow_id=status.healing_workflow_id,
            service=status.service,
            plan_description=plan.description if plan else "",
            detail=f"{self._note}: {detail}" if self._note else detail,
        )
        self._notifying.append(asyncio.create_task(send_notification(request)))

    def _tag(self) -> str:
        """This attempt's suffix for child ids and notification keys: the run's, plus the
        attempt's number on a new attempt."""
        run = workflow.info().run_id[:8]
        tag = f"{run}-r{self._status.retries}" if self._status.retries else run
        rungs = len(self._status.rungs)
        return f"{tag}-p{rungs + 1}" if rungs else tag

    def _set_phase(self, phase: str, outcome: str | None = None) -> None:
        self._status.phase = phase
        updates: list[SearchAttributeUpdate[str]] = [sa.PHASE.value_set(phase)]
        if outcome is not None:
            updates.append(sa.OUTCOME.value_set(outcome))
        if self._status.service:
            updates.append(sa.SERVICE.value_set(self._status.service))
        if self._status.severity:
            updates.append(sa.SEVERITY.value_set(self._status.severity.value))
        if self._status.category:
            updates.append(sa.CATEGORY.value_set(self._status.category.value))
        updates.append(sa.FINGERPRINT.value_set(self._status.fingerprint))
        if self._status.mode and self._mode_searchable:
            updates.append(sa.MODE.value_set(self._status.mode))
        # The router starts incidents with the attributes when the cluster has them; a
        # cluster without them would fail every upsert, so follow the router's lead.
        if workflow.info().typed_search_attributes.get(sa.FINGERPRINT) is not None:
            workflow.upsert_search_attributes(updates)
        workflow.upsert_memo({"summary": self._status.summary()})


def _problem_text(status: IncidentStatus, sample: Event | None) -> str:
    pieces = [status.template]
    if sample is not None:
        for field in ("message", "error", "description", "reason"):
            value = sample.payload.get(field)
            if isinstance(value, str) and value not in pieces:
                pieces.append(value)
        pieces.append(f"{sample.event_type} from {sample.source}")
    return " | ".join(p for p in pieces if p)


def _observation_from(incident: IncidentInput, now: datetime) -> Observation:
    sample = Event(
        id=incident.event_id or workflow.uuid4(),
        timestamp=now,
        event_type=incident.event_type,
        source=incident.source,
        payload=incident.payload,
        correlation_id=incident.correlation_id,
        service=incident.service,
    )
    return Observation(
        fingerprint=incident.fingerprint or workflow.info().workflow_id,
        template=incident.template or f"{incident.event_type} from {incident.source}",
        category=incident.category or ProblemCategory.ERROR,
        severity=incident.severity or ProblemSeverity.MEDIUM,
        service=incident.service,
        count=1,
        sample=sample,
        first_seen=sample.timestamp,
        last_seen=sample.timestamp,
        replay=incident.replay,
        pattern_id=incident.pattern_id,
    )
