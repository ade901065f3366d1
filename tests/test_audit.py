"""The hash-chained audit log on real PostgreSQL: one chain under concurrency, tampering found."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio
from typer.testing import CliRunner

from aiops.audit import AuditEntry, AuditLog
from aiops.db.pool import create_pool
from workers.commands import audit as audit_cmd


@pytest_asyncio.fixture
async def log(database_url: str) -> AsyncIterator[AuditLog]:
    pool = await create_pool(database_url, max_size=8)
    yield AuditLog(pool)
    await pool.close()


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        actor="healer",
        action="restart",
        target=f"svc-{i}",
        decision="allowed",
        details={"i": i, "note": "ünïcode ok"},
        workflow_id=f"incident-{i % 3}",
    )


async def _tamper(database_url: str, sql: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await conn.execute(sql)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def test_concurrent_appends_keep_one_chain(log: AuditLog) -> None:
    await asyncio.gather(*(log.append(_entry(i)) for i in range(20)))
    records = await log.list(limit=100)
    assert [r.seq for r in records] == list(range(1, 21))
    assert len({r.prev_hash for r in records}) == 20
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    result = await log.verify()
    assert result.ok and result.rows == 20
    one = await log.list(workflow_id="incident-1")
    assert len(one) == 7 and {r.workflow_id for r in one} == {"incident-1"}
    assert [r.seq for r in one] == sorted(r.seq for r in one)


async def test_a_changed_row_is_found(log: AuditLog, database_url: str) -> None:
    for i in range(5):
        await log.append(_entry(i))
    await _tamper(database_url, "UPDATE audit_log SET decision = 'denied' WHERE seq = 3")
    result = await log.verify()
    assert not result.ok and result.broken_seq == 3 and "changed" in result.reason


async def test_a_deleted_row_is_found(log: AuditLog, database_url: str) -> None:
    for i in range(5):
        await log.append(_entry(i))
    await _tamper(database_url, "DELETE FROM audit_log WHERE seq = 4")
    result = await log.verify()
    assert not result.ok and result.broken_seq == 4 and "deleted" in result.reason


async def test_a_deleted_tail_is_found(log: AuditLog, database_url: str) -> None:
    for i in range(5):
        await log.append(_entry(i))
    await _tamper(database_url, "DELETE FROM audit_log WHERE seq >= 4")
    # what is left is a consistent chain; the sequence still remembers row 5 was written
    result = await log.verify()
    assert not result.ok and result.broken_seq == 4 and "end" in result.reason


async def test_cli_verify_exit_codes(log: AuditLog, database_url: str, tmp_path: Path) -> None:
    for i in range(3):
        await log.append(_entry(i))
    runner = CliRunner()
    # an anchor directory of its own: not the file another run of aiops left in the checkout
    env = {"DATABASE_URL": database_url, "AIOPS_AUDIT_ANCHOR_DIR": str(tmp_path)}
    # no checkpoint anywhere yet: intact, but nothing outside the table vouches for it
    unanchored = await asyncio.to_thread(runner.invoke, audit_cmd.app, ["verify"], env=env)
    assert unanchored.exit_code == 2, unanchored.output
    assert "UNANCHORED" in unanchored.output
    good = await asyncio.to_thread(
        runner.invoke, audit_cmd.app, ["verify", "--allow-unanchored"], env=env
    )
    assert good.exit_code == 0, good.output
    assert "intact" in good.output
    await _tamper(database_url, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    bad = await asyncio.to_thread(runner.invoke, audit_cmd.app, ["verify"], env=env)
    assert bad.exit_code == 1
    assert "row 2" in bad.output
