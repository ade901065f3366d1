"""The healing of 50 incidents at once on one real worker with a small database pool: every
one finishes, none deadlocks, each service is restarted once.

Each incident is on its own service and its plan restarts the service's process: the
action holds a connection for its idempotency lock while it acts, and, while acting,
records the new process through the pool. When the lock's connection came from the same
pool, more such actions at once than the pool had connections left every connection held
by an action waiting for one more (AIOPS_DB_POOL_MAX=5 here: 50 actions for 5).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

from cryptography.fernet import Fernet
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from aiops.db.pool import create_pool
from aiops.models.healing import HealingInput, HealingPlan, HealingResult, PlannedAction
from aiops.policy import load_policy
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceDefinition, ServiceRegistry
from faults.worker_process import (
    MARKER,
    copies_of,
    kill_copies,
    start_worker,
    stop_worker,
    worker_env,
)
from workflows.healing import HealingWorkflow

INCIDENTS = 50
POOL = 5
SLEEP = shutil.which("sleep") or "/bin/sleep"


def _plan(name: str) -> HealingInput:
    return HealingInput(
        incident_id=f"incident-{name}",
        plan=HealingPlan(
            service=name,
            description=f"restart {name}",
            actions=[
                PlannedAction(step="1", action=ActionSpec(action_type="restart", target=name))
            ],
        ),
        policy=load_policy(None),
        verify_timeout_s=5,
    )


async def test_fifty_concurrent_incidents_finish_and_act_once(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    fault_table: object,
) -> None:
    key = Fernet.generate_key()
    names = [f"svc-{i:02d}" for i in range(INCIDENTS)]
    pool = await create_pool(database_url)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        queue=queue,
        secret_key=key.decode(),
        home=tmp_path,
        redis_url=redis_url,
        extra={"AIOPS_DB_POOL_MAX": str(POOL)},
    )
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        registry = ServiceRegistry(pool, Fernet(key))
        for name in names:
            await registry.register(
                ServiceDefinition(
                    name=name,
                    endpoint="http://127.0.0.1:9",
                    health_check=None,
                    restart_argv=[SLEEP, "600"],
                    env={MARKER: name},
                )
            )
        client = temporal_env.client
        handles: list[WorkflowHandle[HealingWorkflow, HealingResult]] = [
            await client.start_workflow(
                HealingWorkflow.run, _plan(name), id=f"healing-{queue}-{name}", task_queue=queue
            )
            for name in names
        ]
        try:
            # a deadlocked pool never finishes: a bound, not a measurement
            results = await asyncio.wait_for(
                asyncio.gather(*(h.result(rpc_timeout=None) for h in handles)), timeout=120
            )
        except TimeoutError:
            states = await pool.fetch(
                "SELECT status, count(*) AS n FROM action_executions GROUP BY status"
            )
            raise AssertionError(
                f"not finished in 120 s; actions by status: {[tuple(r) for r in states]}"
            ) from None
        rows = await pool.fetch(
            "SELECT service, count(*) AS n FROM action_executions"
            " WHERE idempotency_key NOT LIKE '%:compensate' GROUP BY service"
        )
        acted = {r["service"]: int(r["n"]) for r in rows}
        running = {name: len(copies_of(name)) for name in names}
    finally:
        stop_worker(worker)
        kill_copies(*names)
        await pool.close()
    healed = sum(1 for r in results if r.outcome == "healed")
    lost = sum(1 for name in names if acted.get(name, 0) == 0)
    twice = sum(1 for name in names if acted.get(name, 0) > 1 or running[name] > 1)
    fault_table.record(  # type: ignore[attr-defined]
        fault=f"{INCIDENTS} concurrent incidents, pool of {POOL}",
        unit="incidents",
        sent=INCIDENTS,
        lost=lost,
        duplicated=0,
        acted_twice=twice,
        note=f"{healed} healed; each a process restart",
    )
    assert healed == INCIDENTS, [r.detail for r in results if r.outcome != "healed"]
    assert lost == 0 and twice == 0, (acted, running)
    assert all(n == 1 for n in running.values()), running
