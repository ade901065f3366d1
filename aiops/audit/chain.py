"""Each row's hash covers the previous row's hash and its own content, so changing or
deleting any row breaks every later link. Appends from many processes keep one chain by
taking a transaction-scoped advisory lock before reading the last hash."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

GENESIS = "0" * 64
_LOCK_KEY = 0x0A0D17


class AuditEntry(BaseModel):
    actor: str = Field(min_length=1)
    action: str = Field(min_length=1)
    target: str | None = None
    decision: str = Field(min_length=1)
    details: dict[str, Any] = Field(default_factory=dict)
    workflow_id: str | None = None


class AuditRecord(AuditEntry):
    seq: int
    ts: datetime
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    ok: bool
    rows: int
    broken_seq: int | None = None
    reason: str = ""


def row_hash(prev_hash: str, seq: int, ts: datetime, entry: AuditEntry) -> str:
    canonical = json.dumps(
        {"seq": seq, "ts": ts.astimezone(UTC).isoformat(), **entry.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _entry(row: asyncpg.Record) -> AuditEntry:
    details = row["details"]
    return AuditEntry(
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        decision=row["decision"],
        details=json.loads(details) if isinstance(details, str) else dict(details),
        workflow_id=row["workflow_id"],
    )


class AuditLog:
    """Needs a pool from aiops.db.pool.create_pool (its JSON codecs)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def append(self, entry: AuditEntry) -> AuditRecord:
        # ts is truncated to microseconds, what timestamptz keeps, so the hash re-computes
        ts = datetime.now(UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq = (last["seq"] + 1) if last else 1
            prev = last["hash"] if last else GENESIS
            digest = row_hash(prev, seq, ts, entry)
            await conn.execute(
                """
                INSERT INTO audit_log (seq, ts, actor, action, target, decision, details,
                                       workflow_id, prev_hash, hash)
                OVERRIDING SYSTEM VALUE
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                """,
                seq,
                ts,
                entry.actor,
                entry.action,
                entry.target,
                entry.decision,
                entry.details,
                entry.workflow_id,
                prev,
                digest,
            )
            # the identity sequence remembers the last row written: the anchor that tells
            # a deleted tail from a log that simply ends there
            await conn.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), $1)", seq)
        return AuditRecord(**entry.model_dump(), seq=seq, ts=ts, prev_hash=prev, hash=digest)

    async def verify(self) -> AuditVerification:
        expected_seq, expected_prev, rows = 1, GENESIS, 0
        async with self._pool.acquire() as conn, conn.transaction():
            async for row in conn.cursor("SELECT * FROM audit_log ORDER BY seq"):
                rows += 1
                seq = row["seq"]
                if seq != expected_seq:
                    return AuditVerification(
                        ok=False,
                        rows=rows,
                        broken_seq=expected_seq,
                        reason=f"row {expected_seq} is missing (next is {seq}): deleted",
                    )
                if row["prev_hash"] != expected_prev:
                    return AuditVerification(
                        ok=False,
                        rows=rows,
                        broken_seq=seq,
                        reason=f"row {seq} does not link to row {seq - 1}: deleted or replaced",
                    )
                if row_hash(row["prev_hash"], seq, row["ts"], _entry(row)) != row["hash"]:
                    return AuditVerification(
                        ok=False,
                        rows=rows,
                        broken_seq=seq,
                        reason=f"row {seq} was changed after it was written",
                    )
                expected_seq, expected_prev = seq + 1, row["hash"]
            written = await self._last_written(conn)
        if written > expected_seq - 1:
            return AuditVerification(
                ok=False,
                rows=rows,
                broken_seq=expected_seq,
                reason=f"rows {expected_seq}..{written} were deleted from the end",
            )
        return AuditVerification(ok=True, rows=rows)

    @staticmethod
    async def _last_written(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> int:
        name = await conn.fetchval("SELECT pg_get_serial_sequence('audit_log', 'seq')")
        row = await conn.fetchrow(f"SELECT last_value, is_called FROM {name}")
        return int(row["last_value"]) if row and row["is_called"] else 0

    async def list(self, workflow_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        rows = await self._pool.fetch(
            "SELECT * FROM audit_log WHERE ($1::text IS NULL OR workflow_id = $1)"
            " ORDER BY seq DESC LIMIT $2",
            workflow_id,
            limit,
        )
        return [
            AuditRecord(
                **_entry(r).model_dump(),
                seq=r["seq"],
                ts=r["ts"],
                prev_hash=r["prev_hash"],
                hash=r["hash"],
            )
            for r in reversed(rows)
        ]
