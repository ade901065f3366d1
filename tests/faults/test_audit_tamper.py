"""Rewriting the audit log with the application's own credentials (the database owner in
dev): `aiops audit verify` must notice.
"""

from __future__ import annotations

import asyncpg

from aiops.audit import AuditEntry, AuditLog
from aiops.audit.chain import row_hash
from aiops.db.pool import create_pool


def _entry(i: int) -> AuditEntry:
    return AuditEntry(actor="healer", action="restart", target=f"svc-{i}", decision="allowed")


async def _as_owner(database_url: str, *sql: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for statement in sql:
            await conn.execute(statement)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def test_tail_truncated(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=2)
    try:
        log = AuditLog(pool)
        for i in range(10):
            await log.append(_entry(i))
        await _as_owner(
            database_url,
            "DELETE FROM audit_log WHERE seq > 6",
            "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), 6)",
        )
        result = await log.verify()
        assert not result.ok
    finally:
        await pool.close()


async def test_forged_rows(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=2)
    try:
        log = AuditLog(pool)
        for i in range(5):
            await log.append(_entry(i))
        conn = await asyncpg.connect(database_url)
        try:
            last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            prev, seq = last["hash"], last["seq"]
            for i in range(3):
                seq += 1
                ts = await conn.fetchval("SELECT date_trunc('milliseconds', now())")
                entry = AuditEntry(actor="mallory", action="grant", target="db", decision="allowed")
                digest = row_hash(prev, seq, ts, entry)
                await conn.execute(
                    "INSERT INTO audit_log (seq, ts, actor, action, target, decision, details,"
                    " workflow_id, prev_hash, hash) OVERRIDING SYSTEM VALUE"
                    " VALUES ($1, $2, $3, $4, $5, $6, '{}'::jsonb, NULL, $7, $8)",
                    seq, ts, entry.actor, entry.action, entry.target, entry.decision, prev, digest,
                )
                prev = digest
            await conn.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), $1)", seq)
        finally:
            await conn.close()
        result = await log.verify()
        assert not result.ok
    finally:
        await pool.close()
