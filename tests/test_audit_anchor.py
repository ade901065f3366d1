"""AuditAnchorWorkflow on Temporal's time-skipping server: checkpoints on a timer into the
file and its own history, one workflow however many workers start it, continue-as-new on
its budget, and a truncated tail caught by the checkpoint it holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from webhook import Receiver

from activities.audit import AuditActivities
from activities.notify import NotifyActivities
from aiops.audit import AnchorFile, AuditEntry, AuditLog, Checkpoint, derive_audit_keys
from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.errors import AiopsError
from aiops.registry import ServiceRegistry
from workers.commands.audit import start_anchor_workflow, temporal_checkpoint
from workflows.audit import AuditAnchorWorkflow

# what AIOPS_AUDIT_KEY=anchor-test-secret gives
KEYS = derive_audit_keys(b"anchor-test-secret")
T = TypeVar("T")


async def _until(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    for _ in range(300):
        value = await probe()
        if done(value):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached; last {value!r}")


async def _told(receiver: Receiver) -> list[dict[str, Any]]:
    return list(receiver.bodies)


async def test_anchor_workflow_checkpoints_and_catches_truncation(
    time_skipping_env: WorkflowEnvironment, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    env = time_skipping_env
    queue = f"audit-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        temporal_task_queue=queue,
        audit_anchor_interval_s=60,
        audit_anchor_dir=tmp_path,
        notify_urls=f"json://127.0.0.1:{receiver.port}/oncall",
    )
    pool = await create_pool(database_url, max_size=4)
    log = AuditLog(pool, KEYS)
    anchors = AnchorFile(settings.audit_anchor_path, KEYS.anchor)
    acts = AuditActivities(log, anchors)
    notify = NotifyActivities(
        pool, ServiceRegistry(pool, Fernet(Fernet.generate_key())), log, settings
    )
    handle: WorkflowHandle[object, object] | None = None
    try:
        for i in range(3):
            await log.append(AuditEntry(actor="t", action="a", target=str(i), decision="ok"))
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[AuditAnchorWorkflow],
            activities=[acts.checkpoint, notify.send],
        ):
            handle = await start_anchor_workflow(env.client, settings, budget=2)
            again = await start_anchor_workflow(env.client, settings, budget=2)
            assert again.result_run_id == handle.result_run_id  # one workflow, not two
            first_run = handle.result_run_id

            async def latest() -> Checkpoint | None:
                assert handle is not None
                found: Checkpoint | None = await env.client.get_workflow_handle(handle.id).query(
                    AuditAnchorWorkflow.latest
                )
                return found

            held = await _until(latest, lambda c: c is not None and c.seq == 3)
            assert held is not None and held.signature_ok(KEYS.anchor)
            for i in range(3, 5):
                await log.append(AuditEntry(actor="t", action="a", target=str(i), decision="ok"))
            await env.sleep(61)
            held = await _until(latest, lambda c: c is not None and c.seq == 5)
            assert [a.seq for a in anchors.read()] == [3, 5]
            # what `aiops audit verify --temporal` reads: the workflow's copy, signature checked
            address = env.client.service_client.config.target_host
            via = settings.model_copy(update={"temporal_address": address})
            keyed = via.model_copy(update={"audit_key": SecretStr("anchor-test-secret")})
            assert await temporal_checkpoint(keyed) == held
            other = via.model_copy(update={"audit_key": SecretStr("another")})
            with pytest.raises(AiopsError, match="not signed with the audit key"):
                await temporal_checkpoint(other)
            # budget 2: the third round runs in a new run, the checkpoint carried over
            await env.sleep(61)
            described = await env.client.get_workflow_handle(handle.id).describe()
            assert described.run_id != first_run
            assert held is not None
            last_ts = held.ts
            now = await _until(latest, lambda c: c is not None and c.ts > last_ts)
            assert now is not None and (now.seq, now.head) == (held.seq, held.head)
            assert [a.seq for a in anchors.read()] == [3, 5]  # an unchanged head: no new line

            assert receiver.bodies == []  # an intact chain: nobody is bothered
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
                await conn.execute("DELETE FROM audit_log WHERE seq > 3")
                await conn.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), 3)")
                await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
            finally:
                await conn.close()
            # the history's copy alone (the file lost) still catches it
            assert held is not None
            result = await log.verify([held])
            assert not result.ok and "rows 4..5 are missing" in result.reason
            # and the workflow refuses to anchor the truncated chain
            await env.sleep(61)

            async def problem() -> str:
                assert handle is not None
                found: str = await env.client.get_workflow_handle(handle.id).query(
                    AuditAnchorWorkflow.problem
                )
                return found

            assert "row 5 is gone" in await _until(problem, bool)
            after = await latest()
            assert after is not None and after.seq == 5  # the good checkpoint is kept
            # the people on call hear it, once: the next rounds meet the same break
            told = await _until(lambda: _told(receiver), bool)
            assert "audit verify" in told[0]["title"] and "row 5 is gone" in told[0]["message"]
            await env.sleep(61)
            await env.sleep(61)
            assert "row" in await problem()
            assert receiver.bodies == told  # once, not at every round
            await env.client.get_workflow_handle(handle.id).terminate("test over")
            handle = None
    finally:
        if handle is not None:
            await env.client.get_workflow_handle(handle.id).terminate("test failed")
        await pool.close()
