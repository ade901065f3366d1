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

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)


@workflow.defn(name=ANCHOR_WORKFLOW)
class AuditAnchorWorkflow:
    def __init__(self) -> None:
        self._latest: Checkpoint | None = None
        self._interval_s: float | None = None
        self._problem = ""

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
        for _ in range(params.budget):
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
            await workflow.sleep(timedelta(seconds=self._interval_s or params.interval_s))
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(
            AnchorRun(
                interval_s=self._interval_s or params.interval_s,
                budget=params.budget,
                latest=self._latest,
            )
        )
