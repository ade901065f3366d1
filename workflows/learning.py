"""LearningWorkflow: every outcome updates what aiops believes about its fixes."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from aiops.agents.models import AgentLearningRequest, AgentLearningResult
    from aiops.models.learning import (
        InsightRequest,
        LearningInput,
        LearningResult,
        OutcomeEventRequest,
        PatternOutcome,
        PatternOutcomeRequest,
        SolutionStats,
    )

_TIMEOUT = timedelta(seconds=60)
_RETRY = RetryPolicy(maximum_attempts=10)


@workflow.defn(name="LearningWorkflow")
class LearningWorkflow:
    # Every step is a short, idempotent database or stream write: local activities keep the
    # whole run to one workflow task.
    @workflow.run
    async def run(self, input: LearningInput) -> LearningResult:
        result = LearningResult()
        # Only a plan that ran to a verdict teaches us about its solution: an escalation or a
        # refusal says nothing about whether the fix works.
        if input.solution_id and input.outcome in ("healed", "compensated", "failed"):
            result.before = await workflow.execute_local_activity(
                "read_solution_stats",
                input.solution_id,
                result_type=SolutionStats,
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
            result.after = await workflow.execute_local_activity(
                "record_solution_outcome",
                input,
                result_type=SolutionStats,
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
        # Both steps are gated on inputs that older incidents never had, so their saved
        # histories replay unchanged.
        if input.ballots:
            result.agents = await workflow.execute_local_activity(
                "record_agent_outcomes",
                AgentLearningRequest(
                    incident_id=input.incident_id,
                    outcome=input.outcome,
                    ballots=input.ballots,
                    winning_plan=input.winning_plan,
                    solution_id=input.solution_id,
                    resolution_time_s=input.resolution_time_s,
                ),
                result_type=AgentLearningResult,
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
        if input.pattern_id and input.outcome in ("healed", "compensated", "failed"):
            result.pattern = await workflow.execute_local_activity(
                "record_pattern_outcome",
                PatternOutcomeRequest(
                    pattern_id=input.pattern_id,
                    incident_id=input.incident_id,
                    success=input.outcome == "healed",
                    solution_id=input.solution_id,
                ),
                result_type=PatternOutcome,
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
        result.insight_id = await workflow.execute_local_activity(
            "record_insight",
            InsightRequest(
                incident_id=input.incident_id,
                problem_id=input.problem_id,
                solution_id=input.solution_id,
                outcome=input.outcome,
                summary=input.summary,
            ),
            result_type=str,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        result.outcome_event_id = await workflow.execute_local_activity(
            "publish_outcome_event",
            OutcomeEventRequest(
                incident_id=input.incident_id,
                outcome=input.outcome,
                service=input.service,
                solution_id=input.solution_id,
                causation_event_id=input.causation_event_id,
                correlation_id=input.correlation_id,
                success_rate_before=result.before.success_rate if result.before else None,
                success_rate_after=result.after.success_rate if result.after else None,
            ),
            result_type=str,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        return result
