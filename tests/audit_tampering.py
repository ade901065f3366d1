"""What the audit tests share: a row to append, `aiops audit` in-process, and the table
owner's hand (what the app's own credentials can do in dev: it owns the table)."""

from __future__ import annotations

import asyncio

import asyncpg
from typer.testing import CliRunner, Result

from aiops.audit import AuditEntry
from workers.commands import audit as audit_cmd


def entry(i: int) -> AuditEntry:
    return AuditEntry(actor="healer", action="restart", target=f"svc-{i}", decision="allowed")


async def audit_cli(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, audit_cmd.app, list(args))


async def as_owner(database_url: str, *sql: str) -> None:
    """Run statements with the triggers off, as the table's owner may."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for statement in sql:
            await conn.execute(statement)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()
