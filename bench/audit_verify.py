"""`aiops audit verify` on a large log: rows per second and memory, against the floor of
streaming the same rows without checking them, measured in the same run.

Starts the embedded PostgreSQL, writes a keyed chain of --rows rows (HMAC-SHA256, the
way AuditLog.append links them, loaded with COPY), anchors its head, then times:

- raw: the verify query's cursor alone (what the database and asyncpg cost)
- verify: AuditLog.verify with the checkpoints (every MAC and link checked)

    .venv/bin/python bench/audit_verify.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from aiops.audit import AuditEntry, AuditLog, AuditVerification, derive_audit_keys
from aiops.audit.chain import GENESIS, KEYED, row_mac
from aiops.db.migrate import migrate
from aiops.db.pool import create_pool
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port

KEYS = derive_audit_keys(b"bench")


def _rss_mb() -> float:
    """Resident memory now (not the peak: filling the table took more than verify may)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _fill(url: str, rows: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    prev = GENESIS
    records = []
    for seq in range(1, rows + 1):
        ts = start + timedelta(milliseconds=seq)
        entry = AuditEntry(
            actor="aiops-healer",
            action="action",
            target=f"svc-{seq % 50}",
            decision="executed",
            details={"step": seq % 7, "detail": "restart done", "audit_key": f"k{seq}"},
            workflow_id=f"incident-{seq % 997}",
        )
        mac = row_mac(KEYS.chain, prev, seq, ts, entry)
        records.append(
            (
                seq,
                ts,
                entry.actor,
                entry.action,
                entry.target,
                entry.decision,
                json.dumps(entry.details),
                entry.workflow_id,
                prev,
                mac,
                KEYED,
            )
        )
        prev = mac
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "audit_log",
            records=records,
            columns=[
                "seq", "ts", "actor", "action", "target", "decision", "details",
                "workflow_id", "prev_hash", "hash", "mac_alg",
            ],
        )  # fmt: skip
        await conn.execute("SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), $1)", rows)
    finally:
        await conn.close()


async def _raw(url: str) -> tuple[int, float]:
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    n = 0
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            query = (
                "SELECT seq, ts, actor, action, target, decision, details, workflow_id,"
                " prev_hash, hash, mac_alg FROM audit_log WHERE seq > 0 ORDER BY seq"
            )
            async for _ in conn.cursor(query, prefetch=2000):
                n += 1
    finally:
        await conn.close()
    return n, time.perf_counter() - started


async def main(rows: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-audit-"))
    stack = DevStack(
        home, postgres_port=free_port(), redis_port=free_port(), services=("postgres",)
    )
    print(f"starting PostgreSQL under {home} ...", flush=True)
    state = (await stack.up()).state
    try:
        admin = state.services["postgres"].url.rsplit("/", 1)[0] + "/postgres"
        conn = await asyncpg.connect(admin)
        await conn.execute('CREATE DATABASE "bench_audit"')
        await conn.close()
        url = admin.rsplit("/", 1)[0] + "/bench_audit"
        await migrate(url, 384)
        started = time.perf_counter()
        await _fill(url, rows)
        gc.collect()
        print(f"wrote {rows} keyed rows in {time.perf_counter() - started:.1f}s")
        pool = await create_pool(url, max_size=2)
        try:
            log = AuditLog(pool, KEYS)
            checkpoint = await log.checkpoint()
            assert not isinstance(checkpoint, AuditVerification), checkpoint
            raw_n, raw_s = await _raw(url)
            rss_before = _rss_mb()
            started = time.perf_counter()
            result = await log.verify([checkpoint])
            verify_s = time.perf_counter() - started
            rss_after = _rss_mb()
            assert result.ok and result.rows == rows == raw_n, result
        finally:
            await pool.close()
        print(f"raw cursor   : {raw_n / raw_s:>9.0f} rows/s ({raw_s:.2f}s)")
        print(
            f"audit verify : {rows / verify_s:>9.0f} rows/s ({verify_s:.2f}s), checkpoint matched"
        )
        print(f"verify / raw : {verify_s / raw_s:.2f}x the time of streaming the rows unchecked")
        print(f"resident     : {rss_before:.0f} MB before verify, {rss_after:.0f} MB after")
    finally:
        stack.down()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().rows))
