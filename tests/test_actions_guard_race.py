"""The rate limit and the blast radius hold when workflows act at the same moment: counting
and claiming are one step, so of several actions racing for a limit of 1 exactly one runs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
from cryptography.fernet import Fernet
from known_problems import register_simulated

from aiops.actions.base import ActionOutcome, Adapter
from aiops.actions.executor import ActionExecutor, ExecuteRequest
from aiops.actions.guard import ActionGuard
from aiops.actions.simulated import SimulatedAdapter
from aiops.auth.approvals import ApprovalSigner
from aiops.policy import PolicyFile
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceRegistry

RACERS = 20


def _executor(pool: asyncpg.Pool, policy: Path) -> ActionExecutor:
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    adapters: dict[str, Adapter] = {"simulated": SimulatedAdapter()}
    guard = ActionGuard(
        pool,
        registry,
        PolicyFile(policy),
        ApprovalSigner(os.urandom(32)),
        "open",
        frozenset(adapters),
    )
    return ActionExecutor(pool, registry, adapters, guard)


def _request(workflow_id: str) -> ExecuteRequest:
    return ExecuteRequest(
        idempotency_key=f"{workflow_id}:1",
        workflow_id=workflow_id,
        step="1",
        action=ActionSpec(
            action_type="cache_clear",
            target="racy-service",
            parameters={"success_probability": 1.0, "delay_s": 0.3},
        ),
        service="racy-service",
    )


async def _race(executor: ActionExecutor) -> list[ActionOutcome]:
    return list(
        await asyncio.gather(*(executor.execute(_request(f"wf-{i}")) for i in range(RACERS)))
    )


async def test_rate_limit_of_one_lets_exactly_one_of_racing_actions_run(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rate_limit:\n  max_actions: 1\n  window_s: 600\n")
    await register_simulated(pool, "racy-service")
    outcomes = await _race(_executor(pool, policy))
    ran = [o for o in outcomes if o.success]
    refused = [o for o in outcomes if o.data.get("refused")]
    assert len(ran) == 1, [o.detail for o in outcomes]
    assert len(refused) == RACERS - 1 and all("rate limit" in o.detail for o in refused)
    acted = await pool.fetchval("SELECT count(*) FROM action_executions")
    assert acted == 1


async def test_blast_radius_of_one_lets_exactly_one_of_racing_remediations_act(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rate_limit:\n  max_actions: 100\n  window_s: 600\n"
        "blast_radius:\n  max_concurrent_remediations: 1\n"
    )
    await register_simulated(pool, "racy-service")
    # every remediation opened (as HealingWorkflow does first) before any of them acts
    for i in range(RACERS):
        await pool.execute(
            "INSERT INTO remediations (workflow_id, service) VALUES ($1, 'racy-service')",
            f"wf-{i}",
        )
    outcomes = await _race(_executor(pool, policy))
    ran = [o for o in outcomes if o.success]
    assert len(ran) == 1, [o.detail for o in outcomes]
    assert all("blast radius" in o.detail for o in outcomes if not o.success)
    # the one that acted finishes: the next remediation may act
    winner = await pool.fetchval("SELECT workflow_id FROM action_executions")
    await pool.execute("UPDATE remediations SET finished_at = now() WHERE workflow_id = $1", winner)
    later = await _executor(pool, policy).execute(_request("wf-late"))
    assert later.success, later.detail


async def test_a_retry_is_judged_by_the_counts_at_its_claim(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A claim left by a worker that died is not refused because another workflow acted
    after it: the action may already have happened."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("rate_limit:\n  max_actions: 1\n  window_s: 600\n")
    await register_simulated(pool, "racy-service")
    executor = _executor(pool, policy)
    first = await executor.execute(_request("wf-a"))
    assert first.success
    # as if wf-a's worker died after claiming (its row left 'started'), and wf-b acted
    # later, under a looser policy of the time
    await pool.execute(
        "UPDATE action_executions SET status = 'started', result = NULL,"
        " started_at = started_at - interval '5 s'"
    )
    await pool.execute(
        "INSERT INTO action_executions (idempotency_key, workflow_id, step, adapter,"
        " action_type, target, service, action, status)"
        " SELECT 'wf-b:1', 'wf-b', step, adapter, action_type, target, service, action,"
        " 'succeeded' FROM action_executions"
    )
    retried = await executor.execute(_request("wf-a"))
    assert retried.success and not retried.data.get("refused"), retried.detail
    fresh = await executor.execute(_request("wf-c"))
    assert fresh.data.get("refused") and "rate limit" in fresh.detail
