"""kill -9 of a real worker at each step of a process restart: after the retry on a new
worker, exactly one process of the service runs and it was spawned once.

The steps: while the old process is being stopped (before the spawn), right after the
spawn (before the new process is recorded anywhere but the pid file), and after the action
is recorded as done (before the workflow hears of it). The service writes a file when it
starts and when it is asked to stop, which is how the test knows where the worker is.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from cryptography.fernet import Fernet
from temporalio.testing import WorkflowEnvironment

from aiops.db.pool import create_pool
from aiops.devstack.processes import spawn
from aiops.models.healing import HealingInput, HealingPlan, HealingResult, PlannedAction
from aiops.policy import load_policy
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceDefinition, ServiceRegistry
from aiops.registry.models import ProcessInfo
from faults.worker_process import MARKER, copies_of, kill_9, kill_copies, start_worker, stop_worker
from faults.worker_process import worker_env as make_env
from workflows.healing import HealingWorkflow

# Slow to stop (2 s after SIGTERM), so a kill can land while the worker stops it.
SERVICE = """
import os, signal, sys, time
here = sys.argv[1]
def stop(*_):
    open(os.path.join(here, f"stopping-{os.getpid()}"), "w").close()
    time.sleep(2.0)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(here, f"started-{os.getpid()}"), "w").close()
while True:
    time.sleep(1)
"""


async def _until(found: Callable[[], Awaitable[bool]], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not await found():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _started(here: Path) -> set[int]:
    return {int(p.name.split("-")[1]) for p in here.glob("started-*")}


async def _scenario(
    step: str,
    env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    registry: ServiceRegistry,
    base_env: dict[str, str],
    home: Path,
) -> tuple[int, int, str]:
    """(copies running after the retry, spawns of the new process, the step's detail)."""
    name = f"svc-{step}"
    here = home / "marks"
    here.mkdir(parents=True)
    argv = [sys.executable, "-S", "-c", SERVICE, str(here)]
    await registry.register(
        ServiceDefinition(
            name=name,
            endpoint="http://127.0.0.1:9",
            health_check=None,
            restart_argv=argv,
            env={MARKER: name},
        )
    )
    old = spawn(argv, home / "old.log", env={MARKER: name})
    await registry.record_process(
        name,
        ProcessInfo(pid=old.pid, create_time=old.create_time, started_at=datetime.now(UTC)),
    )
    assert await _until(lambda: asyncio.sleep(0, old.pid in _started(here)))
    queue = f"q-{uuid.uuid4().hex[:8]}"
    worker_env = {**base_env, "AIOPS_TASK_QUEUE": queue, "AIOPS_HOME": str(home)}
    first = start_worker(worker_env, home / "worker.log")
    wid = f"healing-{step}-{uuid.uuid4().hex[:6]}"
    handle = await env.client.start_workflow(
        HealingWorkflow.run,
        HealingInput(
            incident_id=f"incident-{step}",
            plan=HealingPlan(
                service=name,
                description="restart it",
                actions=[
                    PlannedAction(step="1", action=ActionSpec(action_type="restart", target=name))
                ],
            ),
            policy=load_policy(None),
            verify_timeout_s=5,
        ),
        id=wid,
        task_queue=queue,
    )

    async def reached() -> bool:
        if step == "stopping":
            return (here / f"stopping-{old.pid}").exists()
        if step == "spawned":
            return bool(_started(here) - {old.pid})
        status = await pool.fetchval(
            "SELECT status FROM action_executions WHERE idempotency_key = $1", f"{wid}:1"
        )
        return bool(status == "succeeded")

    second = None
    try:
        assert await _until(reached), f"the worker never reached the step {step}"
        kill_9(first)
        second = start_worker(worker_env, home / "worker.log")
        result: HealingResult = await asyncio.wait_for(handle.result(rpc_timeout=None), 120)
        # a process the worker stopped may take its 2 s to leave
        await _until(lambda: asyncio.sleep(0, len(copies_of(name)) <= 1), timeout=10)
    finally:
        stop_worker(first)
        if second is not None:
            stop_worker(second)
    assert result.outcome == "healed", result.detail
    step_outcome = result.steps[0].outcome
    return (
        len(copies_of(name)),
        len(_started(here) - {old.pid}),
        (step_outcome.detail if step_outcome else ""),
    )


async def test_kill_9_of_the_worker_at_each_step_of_a_restart(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    fault_table: object,
) -> None:
    key = Fernet.generate_key()
    pool = await create_pool(database_url)
    registry = ServiceRegistry(pool, Fernet(key))
    base_env = make_env(
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        queue="unused",
        secret_key=key.decode(),
        home=tmp_path,
        redis_url=redis_url,
    )
    steps = ("stopping", "spawned", "recorded")
    try:
        results = await asyncio.gather(
            *(
                _scenario(step, temporal_env, pool, registry, base_env, tmp_path / step)
                for step in steps
            )
        )
    finally:
        kill_copies(*(f"svc-{s}" for s in steps))
        await pool.close()
    running = {step: r[0] for step, r in zip(steps, results, strict=True)}
    spawned = {step: r[1] for step, r in zip(steps, results, strict=True)}
    fault_table.record(  # type: ignore[attr-defined]
        fault="worker kill -9 at each step of a restart",
        unit="actions",
        sent=len(steps),
        lost=sum(1 for n in running.values() if n == 0),
        duplicated=sum(max(0, n - 1) for n in running.values()),
        acted_twice=sum(max(0, n - 1) for n in spawned.values()),
        note="killed: " + ", ".join(steps),
    )
    assert running == dict.fromkeys(steps, 1), (running, results)
    assert spawned == dict.fromkeys(steps, 1), (spawned, results)
