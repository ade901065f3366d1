"""Rewriting the audit log with the application's own credentials (the database owner in
dev, who can disable the triggers): `aiops audit verify` must notice. Each attack went
unnoticed by the plain SHA-256 chain; the keyed chain and its checkpoints name it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
import pytest_asyncio
from audit_tampering import as_owner, audit_cli, entry
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.audit import AuditActivities
from aiops.audit import AnchorFile, AuditEntry, AuditLog, Checkpoint, audit_keys
from aiops.audit.anchors import ANCHOR_WORKFLOW_ID
from aiops.audit.chain import GENESIS, row_hash
from aiops.config import get_settings, load_settings
from aiops.db.pool import create_pool
from workers.commands.audit import start_anchor_workflow
from workflows.audit import AuditAnchorWorkflow

T = TypeVar("T")


@dataclass
class Setup:
    log: AuditLog
    database_url: str


@pytest.fixture
def audit_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AIOPS_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest_asyncio.fixture
async def app(database_url: str, audit_env: None) -> AsyncIterator[Setup]:
    pool = await create_pool(database_url, max_size=2)
    yield Setup(AuditLog(pool, audit_keys(load_settings())), database_url)
    await pool.close()


async def _forge(database_url: str, count: int, mac_alg: str | None = None) -> None:
    """Append rows whose plain SHA-256 links are valid, as the old chain required. As the
    owner: migration 025's trigger refuses unkeyed rows after keyed ones, until disabled."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        prev, seq = (last["hash"], last["seq"]) if last else ("0" * 64, 0)
        for _ in range(count):
            seq += 1
            ts = await conn.fetchval("SELECT date_trunc('milliseconds', now())")
            entry = AuditEntry(actor="mallory", action="grant", target="db", decision="allowed")
            digest = row_hash(prev, seq, ts, entry)
            await conn.execute(
                "INSERT INTO audit_log (seq, ts, actor, action, target, decision, details,"
                " workflow_id, prev_hash, hash, mac_alg) OVERRIDING SYSTEM VALUE"
                " VALUES ($1, $2, $3, $4, $5, $6, '{}'::jsonb, NULL, $7, $8,"
                " coalesce($9, 'sha256'))",
                seq,
                ts,
                entry.actor,
                entry.action,
                entry.target,
                entry.decision,
                prev,
                digest,
                mac_alg,
            )
            prev = digest
        await conn.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), $1)", seq)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def test_tail_truncated_and_sequence_reset(app: Setup, fault_table: object) -> None:
    for i in range(10):
        await app.log.append(entry(i))
    anchored = await audit_cli("anchor")  # what the worker's AuditAnchorWorkflow does on a timer
    assert anchored.exit_code == 0, anchored.output
    for i in range(10, 12):
        await app.log.append(entry(i))
    await as_owner(
        app.database_url,
        "DELETE FROM audit_log WHERE seq > 6",
        "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), 6)",
    )
    result = await audit_cli("verify")
    assert result.exit_code == 1
    assert "rows 7..10 are missing" in result.output and "anchored row 10" in result.output
    assert len(result.output.strip().splitlines()) == 1
    fault_table.record(  # type: ignore[attr-defined]
        fault="audit tail truncated + sequence reset",
        unit="rows",
        sent=12,
        lost=6,
        duplicated=0,
        acted_twice=0,
        detected=True,
        note="rows 7..10 named (11..12 were after the last checkpoint)",
    )


async def test_forged_rows_with_valid_plain_hashes(app: Setup, fault_table: object) -> None:
    for i in range(5):
        await app.log.append(entry(i))
    await _forge(app.database_url, 3)
    result = await audit_cli("verify")
    assert result.exit_code == 1
    assert "row 6" in result.output and "forged" in result.output
    refused = await audit_cli("anchor")  # the worker's checkpoint never blesses a forgery
    assert refused.exit_code == 1 and "not anchored" in refused.output
    # marked as keyed, the same rows fail their HMAC
    await as_owner(app.database_url, "DELETE FROM audit_log WHERE seq > 5")
    await _forge(app.database_url, 3, mac_alg="hmac-sha256")
    result = await audit_cli("verify")
    assert result.exit_code == 1
    assert "row 6" in result.output and "HMAC does not match" in result.output
    fault_table.record(  # type: ignore[attr-defined]
        fault="audit rows forged (valid SHA-256 links)",
        unit="rows",
        sent=5,
        lost=0,
        duplicated=0,
        acted_twice=0,
        detected=True,
        note="row 6 named (3 rows inserted)",
    )


async def test_whole_log_rewritten_as_legacy(app: Setup, fault_table: object) -> None:
    """Replace every keyed row by an unkeyed chain of the same length: only the checkpoint
    outside the table can tell."""
    for i in range(4):
        await app.log.append(entry(i))
    assert (await audit_cli("anchor")).exit_code == 0
    await as_owner(app.database_url, "DELETE FROM audit_log")
    await _forge(app.database_url, 4)
    result = await audit_cli("verify")
    assert result.exit_code == 1
    assert "row 1" in result.output and "forged" in result.output
    fault_table.record(  # type: ignore[attr-defined]
        fault="audit log rewritten as a legacy chain",
        unit="rows",
        sent=4,
        lost=4,
        duplicated=0,
        acted_twice=0,
        detected=True,
        note="row 1 named",
    )


async def _until(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    for _ in range(300):
        value = await probe()
        if done(value):
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached; last {value!r}")


async def _rewrite_as_legacy(database_url: str) -> None:
    """Every row replaced by an unkeyed chain with the attacker's content, same seq and ts."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT seq, ts FROM audit_log ORDER BY seq")
    finally:
        await conn.close()
    prev = GENESIS
    statements = ["DELETE FROM audit_log"]
    for row in rows:
        entry = AuditEntry(actor="mallory", action="nothing", target="x", decision="allowed")
        digest = row_hash(prev, row["seq"], row["ts"], entry)
        statements.append(
            "INSERT INTO audit_log (seq, ts, actor, action, target, decision, details,"
            " workflow_id, prev_hash, hash, mac_alg) OVERRIDING SYSTEM VALUE VALUES"
            f" ({row['seq']}, '{row['ts'].isoformat()}', 'mallory', 'nothing', 'x',"
            f" 'allowed', '{{}}'::jsonb, NULL, '{prev}', '{digest}', 'sha256')"
        )
        prev = digest
    await as_owner(database_url, *statements)


async def test_anchor_file_replayed_then_deleted(
    app: Setup,
    time_skipping_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    fault_table: object,
) -> None:
    """The file alone cannot tell yesterday's copy from today's, nor a missing file from a
    new install: `aiops audit verify` reads AuditAnchorWorkflow's copy by default."""
    env = time_skipping_env
    monkeypatch.setenv("TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
    get_settings.cache_clear()
    settings = load_settings().model_copy(
        update={
            "temporal_task_queue": f"tamper-{uuid.uuid4().hex[:8]}",
            "audit_anchor_interval_s": 60,
        }
    )
    anchors = AnchorFile(settings.audit_anchor_path, app.log.keys.anchor)
    activities = AuditActivities(app.log, anchors)
    handle = env.client.get_workflow_handle(ANCHOR_WORKFLOW_ID)

    async def held() -> Checkpoint | None:
        found: Checkpoint | None = await handle.query(AuditAnchorWorkflow.latest)
        return found

    for i in range(3):
        await app.log.append(entry(i))
    async with Worker(
        env.client,
        task_queue=settings.temporal_task_queue,
        workflows=[AuditAnchorWorkflow],
        activities=[activities.checkpoint],
    ):
        await start_anchor_workflow(env.client, settings)
        try:
            await _until(held, lambda c: c is not None and c.seq == 3)
            yesterday = anchors.path.read_bytes()
            for i in range(3, 5):
                await app.log.append(entry(i))
            await env.sleep(61)
            await _until(held, lambda c: c is not None and c.seq == 5)
            shown = await audit_cli("verify")
            assert shown.exit_code == 0, shown.output
            assert f"{ANCHOR_WORKFLOW_ID} holds row 5" in shown.output

            # 1: put yesterday's anchor file back: the workflow leaves it as evidence
            anchors.path.write_bytes(yesterday)
            await env.sleep(61)
            problem = await _until(lambda: handle.query(AuditAnchorWorkflow.problem), bool)
            assert "behind the workflow's row 5" in problem
            assert [c.seq for c in anchors.read()] == [3]
            # ... and cut the tail, resetting the sequence
            await as_owner(
                app.database_url,
                "DELETE FROM audit_log WHERE seq > 3",
                "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), 3)",
            )
            assert (await audit_cli("verify", "--no-temporal")).exit_code == 0  # the file alone
            replayed = await audit_cli("verify")
            assert replayed.exit_code == 1, replayed.output
            assert "ends at row 3" in replayed.output and "older copy" in replayed.output

            # 2: rewrite what is left as legacy rows and delete the file
            await _rewrite_as_legacy(app.database_url)
            anchors.path.unlink()
            rewritten = await audit_cli("verify")
            assert rewritten.exit_code == 1, rewritten.output
            assert "row 1" in rewritten.output and "forged" in rewritten.output
            # the workflow refuses to anchor it, and verify repeats why
            await env.sleep(61)
            await _until(lambda: handle.query(AuditAnchorWorkflow.problem), lambda p: "gone" in p)
            told = await audit_cli("verify")
            assert f"{ANCHOR_WORKFLOW_ID} cannot anchor: row 5" in told.output, told.output
        finally:
            await handle.terminate("test over")
    get_settings.cache_clear()
    for fault, note in (
        ("audit anchor file replaced by an older copy", "file ends at 3, Temporal holds 5"),
        ("audit log rewritten as legacy, anchor file deleted", "row 1 named via Temporal"),
    ):
        fault_table.record(  # type: ignore[attr-defined]
            fault=fault,
            unit="rows",
            sent=5,
            lost=2,
            duplicated=0,
            acted_twice=0,
            detected=True,
            note=note,
        )
