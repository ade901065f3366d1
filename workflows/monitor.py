"""ProbeServiceWorkflow: what a service's probe schedule (`probe-<service>`) runs."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from aiops.monitor.models import PROBE_ACTIVITY, PROBE_WORKFLOW, ProbeInput, ProbeResult

# An unhealthy service is a result, not a failure: retries cover PostgreSQL or Redis
# being briefly away, and stop well before the next probe is due.
_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_attempts=3
)


@workflow.defn(name=PROBE_WORKFLOW)
class ProbeServiceWorkflow:
    @workflow.run
    async def run(self, request: ProbeInput) -> ProbeResult:
        result: ProbeResult = await workflow.execute_activity(
            PROBE_ACTIVITY,
            request,
            result_type=ProbeResult,
            start_to_close_timeout=timedelta(seconds=request.timeout_s + 30),
            retry_policy=_RETRY,
        )
        return result
