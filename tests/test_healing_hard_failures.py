"""The saga runs whatever way a step fails: an action that raises past its retries, or the
run cancelled while a step waits. Real Temporal (time-skipping) and PostgreSQL; the
simulated adapter, made to raise for the step that says so."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.fernet import Fernet
from known_problems import register_simulated
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.healing import HealingActivities
from aiops.actions.base import ActionContext, ActionOutcome, Adapter
from aiops.actions.executor import ActionExecutor
from aiops.actions.guard import ActionGuard
from aiops.actions.simulated import SimulatedAdapter
from aiops.audit import AuditLog
from aiops.auth.approvals import ApprovalSigner
from aiops.models.healing import ApprovalDecision, HealingInput, HealingPlan, PlannedAction
from aiops.policy import PolicyFile, load_policy
from aiops.policy.models import ActionSpec
from workflows.healing import HealingWorkflow

SIGNER = ApprovalSigner(b"k" * 32)
HISTORIES = Path(__file__).parent / "histories"


async def export(env: WorkflowEnvironment, wid: str, name: str) -> None:
    """EXPORT_HISTORIES=1 pytest ... writes the run to tests/histories/, which CI replays."""
    if os.environ.get("EXPORT_HISTORIES"):
        history = await env.client.get_workflow_handle(wid).fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


class RaisingAdapter(SimulatedAdapter):
    """The simulated adapter, except that changing config key k2 raises (an adapter bug, a
    dropped connection): not an outcome, an exception on every attempt."""

    async def apply(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        if ctx.action.parameters.get("key") == "k2":
            raise RuntimeError("adapter blew up")
        return await super().apply(ctx, intent)


async def _worker(env: WorkflowEnvironment, queue: str, pool: asyncpg.Pool) -> Worker:
    await register_simulated(pool, "import-service", config_keys=("k1", "k2", "k3"))
    from aiops.registry import ServiceRegistry

    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    adapters: dict[str, Adapter] = {"simulated": RaisingAdapter()}
    guard = ActionGuard(pool, registry, PolicyFile(None), SIGNER, "open", frozenset(adapters))
    acts = HealingActivities(
        pool, ActionExecutor(pool, registry, adapters, guard), registry, AuditLog(pool), SIGNER
    )
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[HealingWorkflow],
        activities=[
            acts.policy_context,
            acts.open_remediation,
            acts.close_remediation,
            acts.execute_action,
            acts.compensate_action,
            acts.verify_health,
            acts.probe_health,
            acts.audit,
            acts.check_approval,
        ],
    )


def _step(step: str, **params: Any) -> PlannedAction:
    return PlannedAction(
        step=step,
        action=ActionSpec(
            action_type="config_update",
            target="import-service",
            parameters={"success_probability": 1.0, "key": f"k{step}", "value": 1, **params},
            order=int(step),
        ),
    )


def _input(*steps: PlannedAction, critical: bool = False) -> HealingInput:
    return HealingInput(
        incident_id="incident-test",
        plan=HealingPlan(description="test plan", service="import-service", actions=list(steps)),
        policy=load_policy(None),
        service_critical=critical,
    )


async def _undone(pool: asyncpg.Pool, wid: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT step FROM action_executions WHERE workflow_id = $1"
        " AND idempotency_key LIKE '%:compensate' AND status = 'succeeded' ORDER BY started_at",
        wid,
    )
    return [r["step"] for r in rows]


async def test_a_step_that_raises_past_its_retries_rolls_back_the_done_steps(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    async with await _worker(time_skipping_env, queue, pool):
        result = await time_skipping_env.client.execute_workflow(
            HealingWorkflow.run,
            _input(_step("1"), _step("2")),
            id=wid,
            task_queue=queue,
        )
        await export(time_skipping_env, wid, "healing_raised_rolls_back")
    assert result.outcome == "compensated", result.detail
    assert "step 2 did not finish" in result.detail and "adapter blew up" in result.detail
    assert [s.status for s in result.steps] == ["done", "failed"]
    # the step in flight is undone first (the executor finds nothing of it to undo)
    assert [c.step for c in result.compensations] == ["2", "1"]
    assert all(c.outcome.success for c in result.compensations)
    assert await _undone(pool, wid) == ["1"]
    audited = await pool.fetch(
        "SELECT details->>'audit_key' AS k FROM audit_log WHERE workflow_id = $1", wid
    )
    assert {"compensation:1", "compensation:2"} <= {r["k"] for r in audited}
    assert (
        await pool.fetchval("SELECT outcome FROM remediations WHERE workflow_id = $1", wid)
        == "compensated"
    )


async def _pending(handle: WorkflowHandle[Any, Any], step: str) -> None:
    for _ in range(400):
        if (await handle.query(HealingWorkflow.status)).pending_approval == step:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"step {step} never became pending")


async def test_cancelling_the_run_rolls_back_the_done_steps(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    async with await _worker(time_skipping_env, queue, pool):
        handle = await time_skipping_env.client.start_workflow(
            HealingWorkflow.run,
            _input(_step("1"), _step("3"), critical=True),
            id=wid,
            task_queue=queue,
        )
        await _pending(handle, "1")
        await handle.signal(HealingWorkflow.approve, ApprovalDecision(approver="a", approved=True))
        await _pending(handle, "3")
        await handle.cancel()
        result = await handle.result()
        await export(time_skipping_env, wid, "healing_cancelled_rolls_back")
    assert result.outcome == "compensated", result.detail
    assert "cancelled" in result.detail
    assert [c.step for c in result.compensations] == ["1"]
    assert await _undone(pool, wid) == ["1"]
