"""`aiops demo --quick` as a user runs it, on the test's servers; its outcomes are read back
from Temporal and PostgreSQL, not from what it printed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from webhook import Receiver

from aiops.audit import AuditLog, audit_keys
from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.models.incident import IncidentStatus
from aiops.modes.report import shadow_report
from workers.commands.audit import anchor_file

ROOT = Path(__file__).resolve().parent.parent


async def run_demo(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    home: Path,
    *args: str,
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """`aiops demo ARGS` as a user runs it, on the test's servers and a task queue of its
    own; (the queue, what it did)."""
    queue = f"demo-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "AIOPS_TASK_QUEUE": queue,
        "AIOPS_HOME": str(home),
        "AIOPS_METRICS_BIND": "off",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from workers.cli import main; main()", "demo", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    return queue, done


async def test_quick_demo_heals_rolls_back_and_escalates(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    stream_prefix: str,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    queue, done = await run_demo(
        temporal_env,
        database_url,
        redis_url,
        tmp_path,
        "--quick",
        "--approve-after",
        "1",
        "--stream-prefix",
        stream_prefix,
        "--notify",
        f"json://127.0.0.1:{receiver.port}/hook",
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
        # the demo's worker keyed the chain with the key generated under its AIOPS_HOME
        demo_settings = Settings(home=tmp_path)
        anchored = anchor_file(demo_settings).latest()
        chain = await AuditLog(pool, audit_keys(demo_settings)).verify(
            anchors=[anchored] if anchored else []
        )
        registered = await pool.fetchval("SELECT count(*) FROM services")
    finally:
        await pool.close()
    # learning: the fix that worked and the runbook that failed were both scored
    assert stats[healed.plan.description] == (1, 1)
    assert rolled.plan is not None and stats[rolled.plan.description] == (1, 0)
    kinds = {(r["action"], r["decision"]) for r in audited}
    assert ("action", "succeeded") in kinds and ("action", "failed") in kinds
    assert ("compensation", "succeeded") in kinds
    # the demo checkpointed the head, so `aiops audit verify` right after it has an anchor
    assert anchored is not None and chain.ok, chain
    assert registered == 0  # the demo leaves nothing registered behind
    # nor a probe schedule that would keep probing a stopped service
    async for schedule in await client.list_schedules():
        assert not schedule.id.startswith("probe-bookmark-api"), schedule.id


async def test_shadow_demo_leaves_each_fault_and_shows_what_would_have_run(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    stream_prefix: str,
    tmp_path: Path,
) -> None:
    queue, done = await run_demo(
        temporal_env,
        database_url,
        redis_url,
        tmp_path,
        "--shadow",
        "--scenario",
        "bad_config",
        "--scenario",
        "crash",
        "--stream-prefix",
        stream_prefix,
    )
    # exit 0 means each fault was checked on the service itself after aiops planned: the
    # config still 0 and requests failing, the crashed process still gone
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "db_pool_size is still 0" in done.stdout and "is gone" in done.stdout
    table = done.stdout[done.stdout.index("would have run (nothing ran)") :]
    assert "config_update on bookmark-api (allow)" in table
    assert "restart on bookmark-api (allow)" in table

    client = temporal_env.client
    results: list[IncidentStatus] = []
    ours: set[str] = set()
    async for execution in client.list_workflows(
        f"WorkflowType = 'IncidentWorkflow' AND TaskQueue = '{queue}'"
    ):
        handle = client.get_workflow_handle(execution.id, result_type=IncidentStatus)
        results.append(await handle.result())
        ours.add(execution.id)
    assert results and {r.outcome for r in results} == {"shadow"}, [r.summary() for r in results]
    assert {r.mode for r in results} == {"shadow"}

    pool = await create_pool(database_url)
    try:
        ran = await pool.fetchval("SELECT count(*) FROM action_executions")
        would = await pool.fetch(
            "SELECT target, decision FROM audit_log WHERE action = 'would-run'"
        )
        modes_left = await pool.fetchval("SELECT count(*) FROM operating_modes")
        report = await shadow_report(client, pool, timedelta(hours=1))
    finally:
        await pool.close()
    assert ran == 0  # no adapter was called, for any step
    assert would and {r["target"] for r in would} == {"bookmark-api"}
    assert modes_left == 0  # the demo put its service back as it found it
    shown = [i for i in report.incidents if i.workflow_id in ours]
    assert any(w.action == "config_update on bookmark-api" for i in shown for w in i.would_run)
