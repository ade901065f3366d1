"""AuditAnchorWorkflow: one long-running workflow (fixed id) that checkpoints the audit
chain's head on a timer. Each checkpoint is an activity result in this workflow's history,
a copy of the anchor that lives in Temporal, out of reach of the database's credentials."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from aiops.audit.anchors import (
        ANCHOR_WORKFLOW,
        CHECKPOINT_ACTIVITY,
        AnchorRun,
        CheckpointRequest,
        CheckpointResult,
    )
    from aiops.audit.chain import Checkpoint
    from aiops.notify.models import NotificationKind, NotifyRequest

from workflows.notifying import send_notification

# a broken chain or a tampered anchor file is sent to the notification channels, once per
# problem (older runs only logged it)
NOTIFY_BROKEN = "audit-anchor-notify"
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)


@workflow.defn(name=ANCHOR_WORKFLOW)
class AuditAnchorWorkflow:
    def __init__(self) -> None:
        self._latest: Checkpoint | None = None
        self._interval_s: float | None = None
        self._problem = ""
        self._notified = ""

    @workflow.signal
    def configure(self, interval_s: float) -> None:
        """The worker signals its setting at every start (signal-with-start)."""
        self._interval_s = interval_s

    @workflow.query
    def latest(self) -> Checkpoint | None:
        return self._latest

    @workflow.query
    def problem(self) -> str:
        return self._problem

    @workflow.run
    async def run(self, params: AnchorRun) -> None:
        self._latest = self._latest or params.latest
        self._notified = self._notified or params.notified
        for round_ in range(params.budget):
            try:
                result: CheckpointResult = await workflow.execute_activity(
                    CHECKPOINT_ACTIVITY,
                    CheckpointRequest(previous=self._latest),
                    result_type=CheckpointResult,
                    start_to_close_timeout=timedelta(minutes=30),
                    retry_policy=_RETRY,
                )
            except ActivityError as error:
                # the database away: try again next round, the loop must outlive outages
                self._problem = str(error.cause or error)
            else:
                self._problem = result.problem
                if result.checkpoint is not None:
                    self._latest = result.checkpoint
                if not result.problem:
                    self._notified = ""  # checks pass again: a new break is news
                elif not self._notified:
                    await self._tell(result.problem, round_)
            await workflow.sleep(timedelta(seconds=self._interval_s or params.interval_s))
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(
            AnchorRun(
                interval_s=self._interval_s or params.interval_s,
                budget=params.budget,
                latest=self._latest,
                notified=self._notified,
            )
        )

    async def _tell(self, problem: str, round_: int) -> None:
        """The chain or the file failed its check (not a database outage, which the next
        round retries): the people on the channels hear it once, not at every round while
        it stays broken (a tampered file's message names a row that grows each round)."""
        if not workflow.patched(NOTIFY_BROKEN):
            return
        self._notified = problem
        info = workflow.info()
        await send_notification(
            NotifyRequest(
                kind=NotificationKind.AUDIT_BROKEN,
                key=f"audit-broken:{info.run_id}:{round_}",
                incident_id=info.workflow_id,
                detail=problem,
            )
        )
