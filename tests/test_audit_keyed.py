"""The keyed audit chain: a legacy prefix still verifies and is reported as such, another
key fails, a tampered anchor file is refused, and a non-owner role (how production runs
the services) cannot update, delete, truncate or switch off the triggers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from typer.testing import CliRunner, Result

from aiops.audit import (
    AnchorError,
    AnchorFile,
    AuditEntry,
    AuditLog,
    Checkpoint,
    audit_keys,
    derive_audit_keys,
)
from aiops.audit.chain import GENESIS, row_hash
from aiops.config import get_settings, load_settings
from aiops.db.pool import create_pool
from workers.commands import audit as audit_cmd


@pytest.fixture
def audit_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AIOPS_HOME", str(tmp_path))
    monkeypatch.setenv("AIOPS_AUDIT_KEY", "keyed-test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=2)
    yield pool
    await pool.close()


def _entry(i: int) -> AuditEntry:
    return AuditEntry(actor="healer", action="restart", target=f"svc-{i}", decision="allowed")


async def _cli(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, audit_cmd.app, list(args))


async def _legacy_rows(pool: asyncpg.Pool, count: int) -> None:
    """Rows as the chain wrote them before it was keyed (plain SHA-256)."""
    prev = GENESIS
    for seq in range(1, count + 1):
        ts = datetime.now(UTC)
        digest = row_hash(prev, seq, ts, _entry(seq))
        await pool.execute(
            "INSERT INTO audit_log (seq, ts, actor, action, target, decision, details,"
            " prev_hash, hash) OVERRIDING SYSTEM VALUE"
            " VALUES ($1, $2, 'healer', 'restart', $3, 'allowed', '{}'::jsonb, $4, $5)",
            seq,
            ts,
            f"svc-{seq}",
            prev,
            digest,
        )
        prev = digest
    await pool.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), $1)", count)


async def test_legacy_prefix_verifies_and_is_named(pool: asyncpg.Pool, audit_env: None) -> None:
    await _legacy_rows(pool, 3)
    log = AuditLog(pool, audit_keys(load_settings()))
    for i in range(2):
        await log.append(_entry(i))
    result = await log.verify()
    assert result.ok and result.rows == 5 and result.legacy_rows == 3
    unanchored = await _cli("verify")
    assert unanchored.exit_code == 2 and "UNANCHORED" in unanchored.output
    shown = await _cli("verify", "--allow-unanchored")
    assert shown.exit_code == 0, shown.output
    assert "rows 1..3 are legacy" in shown.output and "2 HMAC-verified" in shown.output
    assert "no checkpoint" in shown.output
    anchored = await _cli("anchor")
    assert anchored.exit_code == 0 and "anchored: row 5" in anchored.output
    shown = await _cli("verify")
    assert "1 checkpoint(s) matched, last anchored row 5" in shown.output


async def test_another_key_does_not_verify(pool: asyncpg.Pool) -> None:
    await AuditLog(pool, derive_audit_keys(b"one")).append(_entry(1))
    result = await AuditLog(pool, derive_audit_keys(b"two")).verify()
    assert not result.ok and result.broken_seq == 1 and "HMAC" in result.reason


async def test_a_tampered_anchor_file_is_refused(
    pool: asyncpg.Pool, audit_env: None, tmp_path: Path
) -> None:
    keys = audit_keys(load_settings())
    await AuditLog(pool, keys).append(_entry(1))
    assert (await _cli("anchor")).exit_code == 0
    path = load_settings().audit_anchor_path
    forged = Checkpoint(seq=1, head="f" * 64, legacy_rows=0, ts=datetime.now(UTC))
    forged = forged.signed(b"not the anchor key")
    with path.open("a") as out:
        out.write(forged.model_dump_json() + "\n")
    with pytest.raises(AnchorError, match="line 2 is not signed"):
        AnchorFile(path, keys.anchor).read()
    shown = await _cli("verify")
    assert shown.exit_code == 1 and "line 2 is not signed" in shown.output
    assert len(shown.output.strip().splitlines()) == 1
    refused = await _cli("anchor")  # nothing is anchored on top of a forged line
    assert refused.exit_code == 1 and "not signed with the audit key" in refused.output


@pytest_asyncio.fixture
async def app_role_url(database_url: str) -> AsyncIterator[str]:
    """A login role given the services' grants by the owner, as production does."""
    role = f"app_{uuid.uuid4().hex[:10]}"
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app'")
        await owner.execute("SELECT aiops_grant_app_role($1)", role)
        parts = urlsplit(database_url)
        netloc = f"{role}:app@{parts.hostname}:{parts.port}"
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.execute(f"DROP ROLE {role}")
        await owner.close()


async def test_a_non_owner_role_cannot_rewrite_the_log(app_role_url: str) -> None:
    pool = await create_pool(app_role_url, max_size=2)
    log = AuditLog(pool, derive_audit_keys(b"app"))
    try:
        for i in range(3):
            await log.append(_entry(i))
        assert (await log.verify()).ok
        # the rest of the schema stays writable for the services
        await pool.execute("UPDATE services SET updated_at = now() WHERE false")
        conn = await asyncpg.connect(app_role_url)
        try:
            for statement in (
                "UPDATE audit_log SET decision = 'denied' WHERE seq = 2",
                "DELETE FROM audit_log WHERE seq = 3",
                "TRUNCATE audit_log",
                "ALTER TABLE audit_log DISABLE TRIGGER USER",
                "DROP TRIGGER audit_log_no_update_delete ON audit_log",
                "DROP TABLE audit_log",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        finally:
            await conn.close()
        assert (await log.verify()).rows == 3
    finally:
        await pool.close()
