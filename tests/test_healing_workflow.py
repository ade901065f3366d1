"""HealingWorkflow on real Temporal (time-skipping) and real PostgreSQL, simulated adapter."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any, Literal

import asyncpg
import pytest
from cryptography.fernet import Fernet
from known_problems import register_simulated
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.healing import HealingActivities
from aiops.actions.base import Adapter
from aiops.actions.executor import ActionExecutor, ExecuteRequest
from aiops.actions.guard import ActionGuard
from aiops.actions.simulated import SimulatedAdapter
from aiops.audit import AuditLog
from aiops.auth.approvals import ApprovalSigner
from aiops.models.healing import (
    ApprovalDecision,
    HealingInput,
    HealingPlan,
    PlannedAction,
)
from aiops.policy import PolicyFile, load_policy
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceRegistry
from workflows.healing import HealingWorkflow

APPROVAL_KEY = os.urandom(32)
SIGNER = ApprovalSigner(APPROVAL_KEY)


async def _activities(
    pool: asyncpg.Pool, approvals: Literal["open", "signed"] = "open"
) -> HealingActivities:
    """The healing activities with the simulated adapter, acting for import-service."""
    await register_simulated(pool, "import-service", config_keys=("k1", "k2", "k3"))
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    adapters: dict[str, Adapter] = {"simulated": SimulatedAdapter()}
    guard = ActionGuard(pool, registry, PolicyFile(None), SIGNER, approvals, frozenset(adapters))
    executor = ActionExecutor(pool, registry, adapters, guard)
    return HealingActivities(pool, executor, registry, AuditLog(pool), SIGNER, approvals)


def _worker(env: WorkflowEnvironment, queue: str, acts: HealingActivities) -> Worker:
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


def _step(step: str, action_type: str, p: float = 1.0, **params: Any) -> PlannedAction:
    return PlannedAction(
        step=step,
        action=ActionSpec(
            action_type=action_type,
            target="import-service",
            parameters={"success_probability": p, **params},
            order=int(step),
        ),
    )


def _input(*steps: PlannedAction, **extra: Any) -> HealingInput:
    return HealingInput(
        incident_id="incident-test",
        plan=HealingPlan(description="test plan", service="import-service", actions=list(steps)),
        policy=load_policy(None),
        **extra,
    )


HISTORIES = Path(__file__).parent / "histories"


async def _export(env: WorkflowEnvironment, wid: str, name: str) -> None:
    """EXPORT_HISTORIES=1 pytest ... rewrites tests/histories/, which CI replays."""
    if os.environ.get("EXPORT_HISTORIES"):
        history = await env.client.get_workflow_handle(wid).fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


async def _executed(pool: asyncpg.Pool, wid: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT step FROM action_executions WHERE workflow_id = $1 ORDER BY started_at", wid
    )
    return [r["step"] for r in rows]


async def test_plan_heals_and_every_step_is_audited(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    async with _worker(time_skipping_env, queue, await _activities(pool)):
        result = await time_skipping_env.client.execute_workflow(
            HealingWorkflow.run,
            _input(_step("1", "cache_clear"), _step("2", "restart")),
            id=wid,
            task_queue=queue,
        )
    await _export(time_skipping_env, wid, "healing_healed")
    assert result.outcome == "healed"
    assert [s.status for s in result.steps] == ["done", "done"]
    assert await _executed(pool, wid) == ["1", "2"]
    actions = [
        r["action"]
        for r in await pool.fetch(
            "SELECT action FROM audit_log WHERE workflow_id = $1 ORDER BY seq", wid
        )
    ]
    assert actions.count("policy") == 2 and actions.count("action") == 2
    assert (
        await pool.fetchval("SELECT outcome FROM remediations WHERE workflow_id = $1", wid)
        == "healed"
    )


@pytest.mark.parametrize("fail_at", [1, 2, 3])
async def test_failure_at_each_step_compensates_in_reverse(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, fail_at: int
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    steps = [
        _step(str(i), "config_update", 0.0 if i == fail_at else 1.0, key=f"k{i}", value=i)
        for i in (1, 2, 3)
    ]
    async with _worker(time_skipping_env, queue, await _activities(pool)):
        result = await time_skipping_env.client.execute_workflow(
            HealingWorkflow.run,
            _input(*steps),
            id=wid,
            task_queue=queue,
        )
    done_before = [str(i) for i in range(1, fail_at)]
    assert [c.step for c in result.compensations] == list(reversed(done_before))
    await _export(time_skipping_env, wid, f"healing_fail_at_step_{fail_at}")
    assert result.outcome == ("compensated" if done_before else "failed")
    assert result.steps[fail_at - 1].status == "failed"
    assert all(s.status == "pending" for s in result.steps[fail_at:])  # never attempted
    assert await _executed(pool, wid) == [str(i) for i in range(1, fail_at + 1)] + [
        f"{s}" for s in reversed(done_before)
    ]


async def test_forbidden_action_is_refused_and_never_reaches_an_adapter(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    flush = PlannedAction(
        step="2",
        action=ActionSpec(
            action_type="execute", target="redis", parameters={"command": "FLUSHDB"}, order=2
        ),
    )
    async with _worker(time_skipping_env, queue, await _activities(pool)):
        result = await time_skipping_env.client.execute_workflow(
            HealingWorkflow.run,
            _input(_step("1", "cache_clear"), flush),
            id=wid,
            task_queue=queue,
        )
    await _export(time_skipping_env, wid, "healing_refused_forbidden")
    assert result.outcome == "refused"
    assert "data deletion" in result.detail
    assert result.steps[1].status == "refused"
    assert "2" not in await _executed(pool, wid)


async def test_approval_timeout_escalates_without_acting(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    async with _worker(time_skipping_env, queue, await _activities(pool)):
        result = await time_skipping_env.client.execute_workflow(
            HealingWorkflow.run,
            _input(_step("1", "restart"), service_critical=True),
            id=wid,
            task_queue=queue,
        )
    await _export(time_skipping_env, wid, "healing_approval_timeout")
    assert result.outcome == "escalated"
    assert result.steps[0].status == "escalated"
    assert await _executed(pool, wid) == []
    decisions = [
        r["decision"]
        for r in await pool.fetch(
            "SELECT decision FROM audit_log WHERE workflow_id = $1 ORDER BY seq", wid
        )
    ]
    assert "escalated" in decisions


async def _pending(handle: WorkflowHandle[Any, Any], step: str) -> None:
    for _ in range(200):
        status = await handle.query(HealingWorkflow.status)
        if status.pending_approval == step:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"step {step} never became pending")


async def test_decide_update_validates_then_approves(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    """Only the pending step can be decided; a rejection stops the plan, rolls back the
    steps done, and the outcome is rejected (learning credits nothing)."""
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    async with _worker(time_skipping_env, queue, await _activities(pool)):
        handle = await time_skipping_env.client.start_workflow(
            HealingWorkflow.run,
            _input(
                _step("1", "restart"),
                _step("2", "scale", replicas=3),
                _step("3", "cache_clear"),
                service_critical=True,
            ),
            id=wid,
            task_queue=queue,
        )
        await _pending(handle, "1")
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                HealingWorkflow.decide, ApprovalDecision(approver=" ", approved=True)
            )
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                HealingWorkflow.decide,
                ApprovalDecision(approver="alice", approved=True, action_id="9"),
            )
        with pytest.raises(WorkflowUpdateFailedError, match="update failed"):
            # a later step cannot be approved before it is reached
            await handle.execute_update(
                HealingWorkflow.decide,
                ApprovalDecision(approver="alice", approved=True, action_id="2"),
            )
        said = await handle.execute_update(
            HealingWorkflow.decide,
            ApprovalDecision(approver="alice", approved=True, action_id="1", reason="go"),
        )
        assert "approved by alice" in said
        await _pending(handle, "2")
        await handle.signal(
            HealingWorkflow.approve,
            ApprovalDecision(approver="bob", approved=False, action_id="2", reason="not now"),
        )
        result = await handle.result()
        await _export(time_skipping_env, wid, "healing_rejected_rolls_back")
    assert result.outcome == "rejected"
    assert [s.status for s in result.steps] == ["done", "rejected", "pending"]
    assert result.steps[1].approval is not None and result.steps[1].approval.approver == "bob"
    assert [c.step for c in result.compensations] == ["1"]
    assert await _executed(pool, wid) == ["1", "1"]  # step 1, then its compensation


async def test_same_key_never_acts_twice(pool: asyncpg.Pool) -> None:
    acts = await _activities(pool)
    request = ExecuteRequest(
        idempotency_key="wf-1:1",
        workflow_id="wf-1",
        step="1",
        action=_step("1", "restart", 0.5).action,
        service="import-service",
    )
    first = await acts.execute_action(request)
    second = await acts.execute_action(request)
    assert first.replayed is False and second.replayed is True
    assert second.success == first.success and second.detail == first.detail
    row = await pool.fetchrow(
        "SELECT attempts, status FROM action_executions WHERE idempotency_key = 'wf-1:1'"
    )
    assert row is not None and row["attempts"] == 2
