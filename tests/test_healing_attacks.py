"""Attacks on the path that makes actions run, each one a finding of issue 13.

Every test calls what an attacker can reach (a hand-started HealingWorkflow, a raw
execute_action / compensate_action call, a forged or misbound approval) and checks at the
adapter's side that nothing ran: the action_executions table is written only once an
action has been cleared, so an empty row set means no adapter was called.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg
import pytest
from aiops_worker import aiops_worker
from cryptography.fernet import Fernet
from known_problems import import_timeout_incident, register_simulated, seed_import_timeout
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from test_healing_workflow import _worker

from activities.healing import HealingActivities
from aiops.actions.base import ActionContext, Adapter
from aiops.actions.executor import ActionExecutor, ExecuteRequest
from aiops.actions.guard import ActionGuard
from aiops.actions.http import HttpAdapter
from aiops.actions.process import ProcessAdapter
from aiops.actions.redis_commands import RedisAdapter
from aiops.actions.simulated import SimulatedAdapter
from aiops.audit import AuditLog
from aiops.auth.approvals import ApprovalSigner, action_digest
from aiops.auth.pending import signed_decision
from aiops.auth.roles import Identity, Role
from aiops.models.healing import ApprovalDecision, HealingInput, HealingPlan, PlannedAction
from aiops.policy import PolicyFile, load_policy
from aiops.policy.models import ActionSpec, CriticalRules, Policy, RateLimit
from aiops.registry import ServiceDefinition, ServiceRegistry
from workflows.healing import HealingWorkflow
from workflows.incident import IncidentWorkflow

KEY = os.urandom(32)
SIGNER = ApprovalSigner(KEY)
ALICE = Identity(sub="alice", roles=[Role.APPROVER])
FERNET = Fernet(Fernet.generate_key())


async def _acts(
    pool: asyncpg.Pool,
    *,
    simulated: bool = True,
    approvals: Literal["open", "signed"] = "signed",
    logs: Path | None = None,
) -> HealingActivities:
    registry = ServiceRegistry(pool, FERNET)
    adapters: dict[str, Adapter] = {
        "process": ProcessAdapter(registry, logs or Path("/tmp/aiops-test-logs")),
        "http": HttpAdapter(),
        "redis": RedisAdapter(),
    }
    if simulated:
        adapters["simulated"] = SimulatedAdapter()
    guard = ActionGuard(pool, registry, PolicyFile(None), SIGNER, approvals, frozenset(adapters))
    executor = ActionExecutor(pool, registry, adapters, guard)
    return HealingActivities(pool, executor, registry, AuditLog(pool), SIGNER, approvals)


def _request(
    action_type: str,
    target: str = "payments",
    service: str | None = "payments",
    step: str = "1",
    wid: str | None = None,
    **params: Any,
) -> ExecuteRequest:
    wid = wid or f"healing-{uuid.uuid4().hex[:8]}"
    return ExecuteRequest(
        idempotency_key=f"{wid}:{step}",
        workflow_id=wid,
        step=step,
        action=ActionSpec(action_type=action_type, target=target, parameters=params),
        service=service,
    )


async def _ran(pool: asyncpg.Pool, request: ExecuteRequest) -> bool:
    found = await pool.fetchval(
        "SELECT count(*) FROM action_executions WHERE workflow_id = $1", request.workflow_id
    )
    return bool(found)


def _grant(request: ExecuteRequest, decision_id: str = "d-1", **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "workflow_id": request.workflow_id,
        "step": request.step,
        "decision_id": decision_id,
        "digest": action_digest(request.action, request.service),
        "approved": True,
        "ttl": timedelta(minutes=5),
    }
    fields.update(overrides)
    signer = fields.pop("signer", SIGNER)
    grant: str = signer.grant(fields.pop("identity", ALICE), **fields)
    return grant


# --- the action type decides the adapter -------------------------------------------------


async def test_an_adapter_parameter_cannot_turn_cache_clear_into_a_redis_command(
    pool: asyncpg.Pool,
) -> None:
    await ServiceRegistry(pool, FERNET).register(
        ServiceDefinition(name="payments", endpoint="redis://127.0.0.1:1/0")
    )
    request = _request("cache_clear", adapter="redis", command="CLIENT KILL TYPE normal")
    outcome = await (await _acts(pool)).execute_action(request)
    assert not outcome.success and outcome.data.get("refused")
    assert "not a parameter of cache_clear" in outcome.detail
    assert not await _ran(pool, request)


async def test_an_adapter_parameter_cannot_fake_a_success(pool: asyncpg.Pool) -> None:
    await ServiceRegistry(pool, FERNET).register(
        ServiceDefinition(name="payments", endpoint="http://127.0.0.1:9")
    )
    request = _request("restart", adapter="simulated", success_probability=1.0)
    outcome = await (await _acts(pool)).execute_action(request)
    assert not outcome.success and "'adapter' is not a parameter of restart" in outcome.detail
    assert not await _ran(pool, request)


async def test_the_simulated_adapter_exists_only_when_enabled(pool: asyncpg.Pool) -> None:
    await register_simulated(pool, "payments")
    request = _request("cache_clear", success_probability=1.0)
    outcome = await (await _acts(pool, simulated=False)).execute_action(request)
    assert not outcome.success and "AIOPS_SIMULATED_ADAPTER=1" in outcome.detail
    assert not await _ran(pool, request)
    enabled = await (await _acts(pool, simulated=True)).execute_action(request)
    assert enabled.success


async def test_execute_runs_only_the_exact_allow_listed_command(pool: asyncpg.Pool) -> None:
    await ServiceRegistry(pool, FERNET).register(
        ServiceDefinition(name="cache", endpoint="redis://127.0.0.1:1/0")
    )
    acts = await _acts(pool)
    for params in (
        {"command": "CLIENT KILL TYPE normal"},  # allowed by the adapter once, never by policy
        {"command": "MEMORY PURGE", "args": ["x"]},  # arguments behind an allowed command
        {"command": "CONFIG SET maxmemory 1"},
    ):
        request = _request("execute", target="cache", service="cache", **params)
        outcome = await acts.execute_action(request)
        assert not outcome.success and outcome.data.get("refused"), params
        assert not await _ran(pool, request)


# --- targets are registered services, the plan's own ---------------------------------------


async def test_a_target_that_is_not_the_plans_service_is_refused(pool: asyncpg.Pool) -> None:
    await register_simulated(pool, "payments", "billing")
    acts = await _acts(pool)
    other = _request("cache_clear", target="billing", service="payments")
    outcome = await acts.execute_action(other)
    assert not outcome.success and "not the service this plan is for" in outcome.detail
    unknown = _request("cache_clear", target="ledger", service="ledger")
    outcome = await acts.execute_action(unknown)
    assert not outcome.success and "not a registered service" in outcome.detail
    assert not await _ran(pool, other) and not await _ran(pool, unknown)


async def test_parameters_stay_within_the_services_declared_bounds(pool: asyncpg.Pool) -> None:
    await register_simulated(pool, "payments", config_keys=("db_pool_size",))
    acts = await _acts(pool)
    refused = {
        "scale to 1000": _request("scale", replicas=1000),
        "an undeclared key": _request("config_update", key="db_pwd", value=1),
        "a value of the wrong type": _request("config_update", key="db_pool_size", value="x"),
        "a bool for an integer": _request("config_update", key="db_pool_size", value=True),
        "NaN, which passes every bound": _request(
            "config_update", key="db_pool_size", value=float("nan")
        ),
    }
    for what, request in refused.items():
        outcome = await acts.execute_action(request)
        assert not outcome.success and outcome.data.get("refused"), what
        assert not await _ran(pool, request), what
    allowed = await acts.execute_action(
        _request("config_update", key="db_pool_size", value=4, success_probability=1.0)
    )
    assert allowed.success


async def test_a_plan_without_a_service_acts_on_nothing(pool: asyncpg.Pool) -> None:
    await register_simulated(pool, "payments")
    request = _request("cache_clear", service=None)
    outcome = await (await _acts(pool)).execute_action(request)
    assert not outcome.success and "names no service" in outcome.detail
    assert not await _ran(pool, request)


async def test_a_new_run_under_a_closed_workflows_id_neither_replays_nor_undoes(
    pool: asyncpg.Pool,
) -> None:
    """Temporal lets a new run reuse a closed workflow's id: it must not get the old run's
    success back (to put it in its saga) nor undo it."""
    await register_simulated(pool, "payments", config_keys=("k",))
    acts = await _acts(pool)
    first = _request("config_update", key="k", value=3, success_probability=1.0)
    first = first.model_copy(update={"run_id": "run-1"})
    assert (await acts.execute_action(first)).success
    second = first.model_copy(update={"run_id": "run-2"})
    replayed = await acts.execute_action(second)
    assert not replayed.success and "another run" in replayed.detail
    undone = await acts.compensate_action(second)
    assert not undone.success and "another workflow run" in undone.detail
    again = await acts.execute_action(first)  # the first run's own retry: its outcome
    assert again.success and again.replayed
    misfiled = first.model_copy(update={"idempotency_key": "healing-other:1"})
    assert "not this workflow's step" in (await acts.execute_action(misfiled)).detail


# --- approvals: checked where the action runs ----------------------------------------------


async def test_a_critical_action_without_a_signed_approval_never_runs(
    pool: asyncpg.Pool,
) -> None:
    """A raw execute_action for a critical step: no grant, a forged one, one for another
    step, another action or another decision, one that says rejected."""
    await register_simulated(pool, "payments", critical=True)
    acts = await _acts(pool)
    request = _request("restart", success_probability=1.0)
    other_key = ApprovalSigner(os.urandom(32))
    bad = {
        "no grant": None,
        "a grant signed with another key": _grant(request, signer=other_key),
        "a grant for step 2": _grant(request, step="2"),
        "a grant for another decision": _grant(request, decision_id="d-other"),
        "a grant for another action": _grant(
            request, digest=action_digest(ActionSpec(action_type="stop", target="payments"), None)
        ),
        "a rejection": _grant(request, approved=False),
    }
    for what, grant in bad.items():
        forged = request.model_copy(update={"decision_id": "d-1", "grant": grant})
        outcome = await acts.execute_action(forged)
        assert not outcome.success and outcome.data.get("refused"), what
        assert not await _ran(pool, forged), what
    approved = request.model_copy(update={"decision_id": "d-1", "grant": _grant(request)})
    outcome = await acts.execute_action(approved)
    assert outcome.success and outcome.data["approved_by"] == "alice"


async def test_only_an_approver_gets_a_grant() -> None:
    viewer = Identity(sub="eve", roles=[Role.VIEWER, Role.OPERATOR])
    request = _request("restart")
    with pytest.raises(Exception, match="no approver role"):
        _grant(request, identity=viewer)


async def test_open_mode_takes_an_unsigned_approval_signed_mode_does_not(
    pool: asyncpg.Pool,
) -> None:
    await register_simulated(pool, "payments", critical=True)
    request = _request("restart", success_probability=1.0).model_copy(
        update={"decision_id": "d-1", "approver": "bob"}
    )
    signed = await (await _acts(pool, approvals="signed")).execute_action(request)
    assert not signed.success and "no signed approval" in signed.detail
    opened = await (await _acts(pool, approvals="open")).execute_action(request)
    assert opened.success and "unsigned" in opened.data["approved_by"]


async def test_a_forged_compensation_cannot_undo_another_workflows_action(
    pool: asyncpg.Pool,
) -> None:
    await register_simulated(pool, "payments", config_keys=("k",))
    acts = await _acts(pool)
    done = _request("config_update", key="k", value=3, success_probability=1.0)
    assert (await acts.execute_action(done)).success
    forged = done.model_copy(update={"workflow_id": "healing-mallory"})
    undone = await acts.compensate_action(forged)
    assert not undone.success and "another workflow" in undone.detail
    assert not await pool.fetchval(
        "SELECT count(*) FROM action_executions WHERE idempotency_key = $1",
        f"{done.idempotency_key}:compensate",
    )


# --- a hand-started workflow with a permissive policy snapshot -------------------------------


async def test_a_hand_started_workflow_with_a_permissive_policy_acts_on_nothing(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    """`temporal workflow start --type HealingWorkflow` with a policy that makes nothing
    critical and lifts the rate limit: the server's policy still wants an approval for the
    critical service and the scale, and the shipped rate limit still counts."""
    await register_simulated(pool, "payments", critical=True)
    permissive = Policy(
        critical=CriticalRules(action_types=[], critical_services=False),
        rate_limit=RateLimit(max_actions=10_000),
    )
    plan = HealingPlan(
        service="payments",
        description="restart payments, then scale it",
        actions=[
            PlannedAction(step="1", action=ActionSpec(action_type="restart", target="payments")),
            PlannedAction(
                step="2",
                action=ActionSpec(
                    action_type="scale", target="payments", parameters={"replicas": 9}, order=2
                ),
            ),
        ],
    )
    acts = await _acts(pool)
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"healing-{uuid.uuid4().hex[:8]}"
    async with _worker(time_skipping_env, queue, acts):
        result = await time_skipping_env.client.execute_workflow(
            HealingWorkflow.run,
            HealingInput(incident_id="incident-forged", plan=plan, policy=permissive),
            id=wid,
            task_queue=queue,
        )
    assert result.outcome == "refused"
    assert result.steps[0].status == "refused"
    assert "needs approval" in result.detail
    assert not await pool.fetchval(
        "SELECT count(*) FROM action_executions WHERE workflow_id = $1", wid
    )
    refused = await pool.fetch(
        "SELECT target FROM audit_log WHERE workflow_id = $1 AND action = 'action'"
        " AND decision = 'refused'",
        wid,
    )
    assert [r["target"] for r in refused] == ["payments"]
    assert load_policy(None).critical.critical_services  # the shipped policy decided


# --- processes ------------------------------------------------------------------------------


async def test_a_restarted_process_gets_only_its_declared_env(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOPS_SECRET_KEY", "worker-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://aiops:hunter2@db/aiops")
    dump = tmp_path / "env.txt"
    script = (
        "import os, pathlib, time; "
        f"pathlib.Path({str(dump)!r}).write_text('\\n'.join(sorted(os.environ))); "
        "time.sleep(30)"
    )
    registry = ServiceRegistry(pool, FERNET)
    await registry.register(
        ServiceDefinition(
            name="envdump",
            endpoint="http://127.0.0.1:9",
            restart_argv=[sys.executable, "-c", script],
            env={"APP_MODE": "prod"},
        )
    )
    adapter = ProcessAdapter(registry, tmp_path, settle_s=0.5)
    service = await registry.get("envdump")
    ctx = ActionContext(
        idempotency_key="k",
        workflow_id="w",
        step="1",
        action=ActionSpec(action_type="start", target="envdump"),
        service=service,
    )
    try:
        await adapter.apply(ctx, {})
        for _ in range(50):
            if dump.exists() and dump.read_text():
                break
            await asyncio.sleep(0.1)
        names = set(dump.read_text().split("\n"))
    finally:
        await adapter.stop(await registry.get("envdump"), graceful=False)
    assert "AIOPS_SECRET_KEY" not in names and "DATABASE_URL" not in names
    assert {"PATH", "APP_MODE"} <= names
    # what CPython itself may set, and who started it (no secret: the service and action key)
    assert names - {"PATH", "APP_MODE"} <= {"LC_CTYPE", "PWD", "AIOPS_SERVICE", "AIOPS_ACTION_KEY"}


# --- the incident's decide and approve -------------------------------------------------------


async def test_incident_decide_returns_the_childs_verdict_and_late_signals_are_harmless(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    """In signed mode an unsigned `decide` on the incident is refused (it used to be
    confirmed while the child dropped it); a signed one heals; an `approve` signal after
    healing closed is ignored instead of failing the incident."""
    queue = f"q-{uuid.uuid4().hex[:8]}"
    # a fixed id: its history is saved (EXPORT_HISTORIES=1) and replays as this id
    wid = "incident-history-signed-approval"
    async with aiops_worker(
        temporal_env.client, queue, database_url, redis_url, approval_key=KEY, approvals="signed"
    ) as kg:
        await seed_import_timeout(kg, "scale", "Add import workers")  # scale is critical
        handle = await temporal_env.client.start_workflow(
            IncidentWorkflow.run,
            import_timeout_incident(cool_down_s=3),
            id=wid,
            task_queue=queue,
        )
        for _ in range(200):
            if (await handle.query(IncidentWorkflow.status)).pending_approval == "1":
                break
            await asyncio.sleep(0.1)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                IncidentWorkflow.decide, ApprovalDecision(approver="mallory", approved=True)
            )
        assert "no signed approval" in str(refused.value.cause)
        assert (await handle.query(IncidentWorkflow.status)).pending_approval == "1"
        decision = await signed_decision(
            temporal_env.client, SIGNER, ALICE, wid, approved=True, ttl=timedelta(minutes=5)
        )
        said = await handle.execute_update(IncidentWorkflow.decide, decision)
        assert said == "step 1 approved by alice"
        for _ in range(200):
            status = await handle.query(IncidentWorkflow.status)
            if status.healing_result is not None:
                break
            await asyncio.sleep(0.1)
        await handle.signal(IncidentWorkflow.approve, decision)  # the child has closed
        result = await handle.result()
        if os.environ.get("EXPORT_HISTORIES"):
            history = await handle.fetch_history()
            (Path(__file__).parent / "histories" / f"{wid}.json").write_text(history.to_json())
    assert result.outcome == "healed"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
