"""An operator's day with the real binaries: `temporal workflow start` opens an incident with
the README's JSON, `aiops incidents` shows it waiting for approval, `aiops approve` refuses a
bad decision before it reaches the history and then approves, and the incident heals."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiops_worker import aiops_worker
from cryptography.fernet import Fernet
from known_problems import seed_import_timeout
from temporal_signal import cli_signal
from temporalio.testing import WorkflowEnvironment

from aiops.auth.keys import derive_approval_key
from aiops.auth.roles import Role
from aiops.auth.tokens import issue_token
from aiops.devstack import binaries
from aiops.models.incident import IncidentStatus

ROOT = Path(__file__).resolve().parent.parent


async def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )


def _aiops(*args: str) -> list[str]:
    return [sys.executable, "-c", "from workers.cli import main; main()", *args]


async def _waiting_row(wid: str, env: dict[str, str]) -> dict[str, Any]:
    for _ in range(60):
        listed = await _run(_aiops("incidents", "--json"), env)
        assert listed.returncode == 0, listed.stderr
        rows = [r for r in json.loads(listed.stdout) if r["workflow_id"] == wid]
        if rows and rows[0]["pending_approval"]:
            row: dict[str, Any] = rows[0]
            return row
        await asyncio.sleep(0.5)
    raise AssertionError(f"{wid} never showed a pending approval in `aiops incidents`")


async def test_cli_start_list_and_approve(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """In production's signed mode: a forged `temporal workflow signal` changes nothing
    and is audited as refused; `aiops approve` with the approver's AIOPS_TOKEN heals."""
    queue, wid = f"q-{uuid.uuid4().hex[:8]}", f"incident-cli-{uuid.uuid4().hex[:8]}"
    address = temporal_env.client.service_client.config.target_host
    secret_key, jwt_secret = Fernet.generate_key(), "test-jwt-secret-" + uuid.uuid4().hex
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "AIOPS_TASK_QUEUE": queue,
        "AIOPS_TRACING": "off",
        "AIOPS_METRICS_BIND": "off",
        "AIOPS_HOME": str(tmp_path),
        "AIOPS_SECRET_KEY": secret_key.decode(),
        "AIOPS_JWT_SECRET": jwt_secret,
        "AIOPS_APPROVALS": "signed",
        "AIOPS_TOKEN": issue_token(jwt_secret, "alice", [Role.APPROVER], timedelta(hours=1)),
    }
    async with aiops_worker(
        temporal_env.client,
        queue,
        database_url,
        redis_url,
        approval_key=derive_approval_key(secret_key),
        approvals="signed",
    ) as kg:
        # scale is critical in the shipped policy: the incident waits for approval
        _, solution_id = await seed_import_timeout(kg, "scale", "Add an import worker")
        started = await _run(
            [
                str(binaries.temporal_cli()),
                "workflow",
                "start",
                "--address",
                address,
                "--type",
                "IncidentWorkflow",
                "--task-queue",
                queue,
                "--workflow-id",
                wid,
                "--input",
                json.dumps(
                    {
                        "event_type": "ServiceTimeout",
                        "source": "import-service",
                        "payload": {"message": "bookmark import timed out after 30s"},
                        "cool_down_s": 1,
                    }
                ),
            ],
            env,
        )
        assert started.returncode == 0, started.stderr

        row = await _waiting_row(wid, env)
        assert row["status"] == "RUNNING" and row["pending_approval"] == "1"
        assert "awaiting approval" in row["phase"] or row["phase"] == "healing"

        forged = {"approver": "mallory", "approved": True, "reason": "", "action_id": None}
        sent = await cli_signal(address, wid, "approve", forged)
        assert sent.returncode == 0, sent.stderr  # a signal is always accepted...
        refusals = await _refusals(database_url, wid)  # ...and changes nothing
        assert len(refusals) == 1 and "no signed approval" in refusals[0]
        assert (await _waiting_row(wid, env))["pending_approval"] == "1"

        refused = await _run(_aiops("approve", wid, "--action-id", "9"), env)
        assert refused.returncode != 0
        assert "step 9" in refused.stderr

        approved = await _run(_aiops("approve", wid, "--reason", "ok"), env)
        assert approved.returncode == 0, approved.stderr
        assert "step 1 approved by alice" in approved.stdout

        handle = temporal_env.client.get_workflow_handle(wid, result_type=IncidentStatus)
        result = await handle.result()
        stats = await kg.solution_stats(solution_id)

    assert result.outcome == "healed"
    assert result.healing_result is not None
    step = result.healing_result.steps[0]
    assert step.approval is not None and step.approval.approver == "alice"
    assert (stats.attempt_count, stats.success_count) == (1, 1)
    # the refused decision never reached the history: one approval, audited once
    conn = await asyncpg.connect(database_url)
    try:
        approvals = await conn.fetch(
            "SELECT decision, details->>'detail' AS detail FROM audit_log"
            " WHERE action = 'approval' AND workflow_id LIKE $1",
            f"{wid}-healing-%",
        )
    finally:
        await conn.close()
    assert [(r["decision"], r["detail"]) for r in approvals] == [
        ("refused", refusals[0]),
        ("approved", "alice: ok"),
    ]


async def _refusals(database_url: str, wid: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            rows = await conn.fetch(
                "SELECT details->>'detail' AS detail FROM audit_log WHERE action = 'approval'"
                " AND decision = 'refused' AND workflow_id LIKE $1",
                f"{wid}-healing-%",
            )
            if rows:
                return [r["detail"] for r in rows]
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError("the forged approval was never audited as refused")
