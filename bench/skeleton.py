"""The incident's shape with no work in it: the floor that one workflow per phase sets.

An incident runs as a workflow that starts a diagnosis child, then a healing child that runs
one activity (the action); it is healed when the healing child closes. This workflow has
that shape and nothing else: no local activities, no search, no policy, no audit, a no-op
activity. bench/incidents.py measures it in the same run as the incident and the bare
one-activity workflow, so the incident's cost splits into what the shape costs (skeleton
against bare) and what aiops does inside it (incident against skeleton). Sandboxed, as
aiops' workflows run; in a module of its own so the sandbox can import it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="SkeletonIncidentWorkflow")
class SkeletonIncidentWorkflow:
    @workflow.run
    async def run(self, role: str) -> int:
        wid = workflow.info().workflow_id
        if role == "incident":
            await workflow.execute_child_workflow(
                SkeletonIncidentWorkflow.run, "diagnosis", id=f"{wid}-diagnosis"
            )
            await workflow.execute_child_workflow(
                SkeletonIncidentWorkflow.run, "healing", id=f"{wid}-healing"
            )
        elif role == "healing":
            await workflow.execute_activity(
                "bench_noop", 0, start_to_close_timeout=timedelta(seconds=30)
            )
        return 0
