"""The keyed audit log against REVIEW-1's findings 1, 2, 6, 7 and 8: a process with
another key fails on its first append, a rewritten-as-legacy or unanchored log does not
pass `aiops audit verify`, old (unkeyed) writers are refused by the table, the anchor file
survives out-of-order and torn writes, and numbers jsonb rewrites keep the chain whole."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from audit_tampering import as_owner, audit_cli, entry

from aiops.audit import (
    AnchorFile,
    AuditEntry,
    AuditKeyMismatch,
    AuditLog,
    Checkpoint,
    audit_keys,
    derive_audit_keys,
)
from aiops.audit.chain import GENESIS, row_hash
from aiops.config import Settings, get_settings, load_settings
from aiops.db.pool import create_pool
from aiops.registry.secrets import SecretsError, secret_key_bytes

KEYS = derive_audit_keys(b"review-key")


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
def audit_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AIOPS_HOME", str(tmp_path))
    monkeypatch.setenv("AIOPS_AUDIT_KEY", "review-key")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# -- finding 1: another key --------------------------------------------------------------


async def test_another_key_fails_on_its_first_append(pool: asyncpg.Pool) -> None:
    server = AuditLog(pool, KEYS)
    for i in range(2):
        await server.append(entry(i))
    workstation = AuditLog(pool, derive_audit_keys(b"a key generated on a workstation"))
    with pytest.raises(AuditKeyMismatch, match="AIOPS_AUDIT_KEY"):
        await workstation.append(entry(9))
    # nothing was written: the chain is whole and the server goes on appending
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 2
    await server.append(entry(3))
    assert (await server.verify()).ok


@pytest.mark.parametrize("content", [b"", b"\n", b"short"])
def test_an_empty_or_truncated_secret_file_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "secret.key").write_bytes(content)
    with pytest.raises(SecretsError, match="empty or truncated"):
        secret_key_bytes(Settings(home=tmp_path))


def test_a_generated_secret_is_kept(tmp_path: Path) -> None:
    first = secret_key_bytes(Settings(home=tmp_path))
    assert len(first) >= 32 and secret_key_bytes(Settings(home=tmp_path)) == first
    assert not [p for p in tmp_path.iterdir() if p.name != "secret.key"]  # no temp left


def test_processes_creating_the_secret_at_once_share_one(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    settings = Settings(home=tmp_path)
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: secret_key_bytes(settings), range(16)))
    assert len(keys) == 1 and len(next(iter(keys))) >= 32


# -- finding 2: unanchored and rewritten-as-legacy logs ----------------------------------


async def _rewrite_as_legacy(pool: asyncpg.Pool, database_url: str) -> None:
    rows = await pool.fetch("SELECT seq, ts FROM audit_log ORDER BY seq")
    prev = GENESIS
    statements = ["DELETE FROM audit_log"]
    for r in rows:
        entry = AuditEntry(actor="mallory", action="nothing", target="x", decision="allowed")
        digest = row_hash(prev, r["seq"], r["ts"], entry)
        statements.append(
            "INSERT INTO audit_log (seq, ts, actor, action, target, decision, details,"
            " workflow_id, prev_hash, hash, mac_alg) OVERRIDING SYSTEM VALUE VALUES"
            f" ({r['seq']}, '{r['ts'].isoformat()}', 'mallory', 'nothing', 'x', 'allowed',"
            f" '{{}}'::jsonb, NULL, '{prev}', '{digest}', 'sha256')"
        )
        prev = digest
    await as_owner(database_url, *statements)


async def test_rewritten_as_legacy_without_anchor_file_is_unanchored(
    pool: asyncpg.Pool, database_url: str, audit_env: None
) -> None:
    log = AuditLog(pool, audit_keys(load_settings()))
    for i in range(3):
        await log.append(entry(i))
    unanchored = await audit_cli("verify", "--no-temporal")
    assert unanchored.exit_code == 2, unanchored.output
    assert "unanchored" in unanchored.output
    allowed = await audit_cli("verify", "--no-temporal", "--allow-unanchored")
    assert allowed.exit_code == 0, allowed.output
    await _rewrite_as_legacy(pool, database_url)
    shown = await audit_cli("verify", "--no-temporal")  # the anchor file was never there
    assert shown.exit_code == 2 and "unanchored" in shown.output, shown.output


async def test_an_empty_log_needs_no_anchor(pool: asyncpg.Pool, audit_env: None) -> None:
    shown = await audit_cli("verify", "--no-temporal")
    assert shown.exit_code == 0, shown.output


# -- finding 6: old writers refused -------------------------------------------------------


async def test_unkeyed_rows_are_refused_once_keyed_rows_exist(pool: asyncpg.Pool) -> None:
    insert = (
        "INSERT INTO audit_log (seq, ts, actor, action, decision, details, prev_hash, hash)"
        " OVERRIDING SYSTEM VALUE VALUES ($1, now(), 'old', 'restart', 'allowed', '{}'::jsonb,"
        " $2, $3)"
    )
    # before the chain is keyed, an old writer's row is a legacy row
    await pool.execute(insert, 1, GENESIS, "a" * 64)
    await pool.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), 1)")
    log = AuditLog(pool, KEYS)
    await log.append(entry(2))
    with pytest.raises(asyncpg.RaiseError, match="unkeyed row refused"):
        await pool.execute(insert, 3, "b" * 64, "c" * 64)
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 2


# -- finding 7: the anchor file ----------------------------------------------------------


def _checkpoint(seq: int, head: str, ago_s: float = 0) -> Checkpoint:
    ts = datetime.now(UTC) - timedelta(seconds=ago_s)
    return Checkpoint(seq=seq, head=head, legacy_rows=0, ts=ts).signed(KEYS.anchor)


def test_a_lower_checkpoint_after_a_higher_one_is_not_written(tmp_path: Path) -> None:
    anchors = AnchorFile(tmp_path / "a.jsonl", KEYS.anchor)
    assert anchors.append(_checkpoint(12, "b" * 64))
    assert not anchors.append(_checkpoint(10, "a" * 64, ago_s=1))  # the slower writer
    assert [c.seq for c in anchors.read()] == [12]


def test_a_torn_last_line_is_repaired_by_the_next_append(tmp_path: Path) -> None:
    anchors = AnchorFile(tmp_path / "a.jsonl", KEYS.anchor)
    anchors.append(_checkpoint(1, "a" * 64))
    with anchors.path.open("ab") as out:
        out.write(b'{"seq": 2, "he')  # a crash mid-write
    assert anchors.append(_checkpoint(2, "b" * 64))
    assert [c.seq for c in anchors.read()] == [1, 2]


def test_concurrent_appends_keep_the_file_ordered(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    anchors = AnchorFile(tmp_path / "a.jsonl", KEYS.anchor)
    made = [_checkpoint(seq, f"{seq:064x}") for seq in range(1, 41)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(anchors.append, reversed(made)))
    seqs = [c.seq for c in anchors.read()]  # raises if a lower seq followed a higher one
    assert seqs == sorted(seqs) and seqs[-1] == 40


# -- finding 8: numbers jsonb rewrites ---------------------------------------------------


async def test_numbers_jsonb_rewrites_keep_the_chain(pool: asyncpg.Pool) -> None:
    log = AuditLog(pool, KEYS)
    details = {
        "bytes": 2.5e16,
        "odd": 1.2345678901234567e16,
        "huge": 1e300,
        "tiny": 1e-7,
        "zero": -0.0,
        "nan": math.nan,
        "inf": [math.inf, -math.inf],
        "nested": {"n": 3e20, "ok": 0.1, "int": 10**30},
    }
    written = await log.append(AuditEntry(actor="a", action="b", decision="c", details=details))
    result = await log.verify()
    assert result.ok, result.reason
    stored = (await log.list(limit=1))[0]
    assert stored.details == written.details  # what append returned is what is stored
    assert stored.details["bytes"] == 25000000000000000 and stored.details["nan"] == "NaN"
    # a copy skips the model's validator: append normalises again
    await log.append(entry(2).model_copy(update={"details": {"x": 3e20, "y": math.nan}}))
    await log.append(entry(3))  # the next append checks the head's MAC against its key
    assert (await log.verify()).ok
