"""`aiops demo --quick` as a user runs it, on the test's servers; its outcomes are read back
from Temporal and PostgreSQL, not from what it printed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from webhook import Receiver

from aiops.audit import AuditLog
from aiops.db.pool import create_pool
from aiops.models.incident import IncidentStatus

ROOT = Path(__file__).resolve().parent.parent


async def test_quick_demo_heals_rolls_back_and_escalates(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    stream_prefix: str,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    queue = f"demo-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "AIOPS_TASK_QUEUE": queue,
        "AIOPS_HOME": str(tmp_path),
        "AIOPS_METRICS_BIND": "off",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            "from workers.cli import main; main()",
            "demo",
            "--quick",
            "--approve-after",
            "1",
            "--stream-prefix",
            stream_prefix,
            "--notify",
            f"json://127.0.0.1:{receiver.port}/hook",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    client = temporal_env.client
    results: list[IncidentStatus] = []
    async for execution in client.list_workflows(
        f"WorkflowType = 'IncidentWorkflow' AND TaskQueue = '{queue}'"
    ):
        assert execution.status == WorkflowExecutionStatus.COMPLETED
        handle = client.get_workflow_handle(execution.id, result_type=IncidentStatus)
        results.append(await handle.result())
    by_outcome = {r.outcome: r for r in results}
    assert set(by_outcome) == {"healed", "compensated", "unknown"}, [r.summary() for r in results]

    healed = by_outcome["healed"]
    assert healed.healing_result is not None and healed.healing_result.verified is True
    assert healed.plan is not None and "db_pool_size" in healed.plan.description
    rolled = by_outcome["compensated"]
    assert rolled.healing_result is not None
    assert [c.step for c in rolled.healing_result.compensations] == ["1"]
    unknown = by_outcome["unknown"]
    assert unknown.plan is None and unknown.healing_workflow_id is None
    # --notify: people heard of the rolled-back runbook and of the unknown problem
    told = " ".join(json.dumps(body) for body in receiver.bodies)
    assert rolled.fingerprint in told and unknown.fingerprint in told

    pool = await create_pool(database_url)
    try:
        stats = {
            row["description"]: (row["attempts"], row["successes"])
            for row in await pool.fetch(
                "SELECT data->>'description' AS description,"
                " (data->>'attempt_count')::int AS attempts,"
                " (data->>'success_count')::int AS successes"
                " FROM knowledge_nodes WHERE node_type = 'solution'"
                " AND coalesce((data->>'attempt_count')::int, 0) > 0"
            )
        }
        audited = await pool.fetch(
            "SELECT action, decision FROM audit_log WHERE workflow_id LIKE 'incident-%'"
        )
        chain = await AuditLog(pool).verify()
        registered = await pool.fetchval("SELECT count(*) FROM services")
    finally:
        await pool.close()
    # learning: the fix that worked and the runbook that failed were both scored
    assert stats[healed.plan.description] == (1, 1)
    assert rolled.plan is not None and stats[rolled.plan.description] == (1, 0)
    kinds = {(r["action"], r["decision"]) for r in audited}
    assert ("action", "succeeded") in kinds and ("action", "failed") in kinds
    assert ("compensation", "succeeded") in kinds
    assert chain.ok, chain
    assert registered == 0  # the demo leaves nothing registered behind
    # nor a probe schedule that would keep probing a stopped service
    async for schedule in await client.list_schedules():
        assert not schedule.id.startswith("probe-bookmark-api"), schedule.id
