"""The plain `temporal` CLI approves a waiting action: the documented JSON works as is."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from temporal_signal import cli_signal
from temporalio.testing import WorkflowEnvironment
from test_healing_workflow import _activities, _input, _step, _worker

from workflows.healing import HealingWorkflow


async def test_temporal_cli_signal_approves(
    temporal_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    address = temporal_env.client.service_client.config.target_host
    async with _worker(temporal_env, queue, await _activities(pool)):
        handle = await temporal_env.client.start_workflow(
            HealingWorkflow.run,
            _input(_step("1", "restart"), service_critical=True),
            id=wid,
            task_queue=queue,
        )
        for _ in range(100):
            if (await handle.query(HealingWorkflow.status)).pending_approval == "1":
                break
            await asyncio.sleep(0.1)
        decision = {"approver": "oncall-alice", "approved": True, "reason": "ok", "action_id": None}
        sent = await cli_signal(address, wid, "approve", decision)
        assert sent.returncode == 0, sent.stderr
        result = await handle.result()
    assert result.outcome == "healed"
    assert result.steps[0].approval is not None
    assert result.steps[0].approval.approver == "oncall-alice"
    approvals = await pool.fetch(
        "SELECT decision, details FROM audit_log WHERE workflow_id = $1 AND action = 'approval'",
        wid,
    )
    assert [r["decision"] for r in approvals] == ["approved"]
