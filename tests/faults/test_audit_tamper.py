"""Rewriting the audit log with the application's own credentials (the database owner in
dev, who can disable the triggers): `aiops audit verify` must notice. Each attack went
unnoticed by the plain SHA-256 chain; the keyed chain and its checkpoints name it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from typer.testing import CliRunner, Result

from aiops.audit import AuditEntry, AuditLog, audit_keys
from aiops.audit.chain import row_hash
from aiops.config import get_settings, load_settings
from aiops.db.pool import create_pool
from workers.commands import audit as audit_cmd


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


def _entry(i: int) -> AuditEntry:
    return AuditEntry(actor="healer", action="restart", target=f"svc-{i}", decision="allowed")


async def _cli(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, audit_cmd.app, list(args))


async def _as_owner(database_url: str, *sql: str) -> None:
    """What the app's own credentials can do in dev: it owns the table."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for statement in sql:
            await conn.execute(statement)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


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
        await app.log.append(_entry(i))
    anchored = await _cli("anchor")  # what the worker's AuditAnchorWorkflow does on a timer
    assert anchored.exit_code == 0, anchored.output
    for i in range(10, 12):
        await app.log.append(_entry(i))
    await _as_owner(
        app.database_url,
        "DELETE FROM audit_log WHERE seq > 6",
        "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), 6)",
    )
    result = await _cli("verify")
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
        await app.log.append(_entry(i))
    await _forge(app.database_url, 3)
    result = await _cli("verify")
    assert result.exit_code == 1
    assert "row 6" in result.output and "forged" in result.output
    refused = await _cli("anchor")  # the worker's checkpoint never blesses a forgery
    assert refused.exit_code == 1 and "not anchored" in refused.output
    # marked as keyed, the same rows fail their HMAC
    await _as_owner(app.database_url, "DELETE FROM audit_log WHERE seq > 5")
    await _forge(app.database_url, 3, mac_alg="hmac-sha256")
    result = await _cli("verify")
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
        await app.log.append(_entry(i))
    assert (await _cli("anchor")).exit_code == 0
    await _as_owner(app.database_url, "DELETE FROM audit_log")
    await _forge(app.database_url, 4)
    result = await _cli("verify")
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
