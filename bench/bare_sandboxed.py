"""The bare baseline as aiops's workflows run: in the workflow sandbox.

bench/incidents.py's BareWorkflow is defined in its __main__ and runs unsandboxed; every
aiops workflow runs in the sandbox, which costs each run a fresh import of the workflow's
module and each payload a trip through the sandbox. This one, in a module of its own so
the sandbox can import it, is the same workflow measured the way the incident's are.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="SandboxedBareWorkflow")
class SandboxedBareWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        result: int = await workflow.execute_activity(
            "bench_noop", value, start_to_close_timeout=timedelta(seconds=30)
        )
        return result
