"""`aiops audit verify | list`."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from aiops.audit import AuditLog, AuditRecord, AuditVerification
from aiops.config import load_settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url

app = typer.Typer(
    help="The append-only, hash-chained audit log of every decision, approval and action.",
    no_args_is_help=True,
)


async def _verify() -> AuditVerification:
    pool = await create_pool(resolve_database_url(load_settings()), max_size=1)
    try:
        return await AuditLog(pool).verify()
    finally:
        await pool.close()


@app.command()
def verify() -> None:
    """Walk the hash chain; exit 1 naming the first changed or deleted row."""
    result = asyncio.run(_verify())
    if result.ok:
        typer.echo(f"audit log intact: {result.rows} rows, chain verified")
        return
    typer.echo(f"audit log BROKEN at row {result.broken_seq}: {result.reason}", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_(
    workflow_id: Annotated[str | None, typer.Option("--workflow-id", help="one incident")] = None,
    limit: Annotated[int, typer.Option(help="newest N rows")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """Print audit rows, oldest first."""

    async def fetch() -> list[AuditRecord]:
        pool = await create_pool(resolve_database_url(load_settings()), max_size=1)
        try:
            return await AuditLog(pool).list(workflow_id=workflow_id, limit=limit)
        finally:
            await pool.close()

    for record in asyncio.run(fetch()):
        if as_json:
            typer.echo(json.dumps(record.model_dump(mode="json")))
        else:
            detail = record.details.get("detail", "")
            typer.echo(
                f"{record.seq:>6} {record.ts:%Y-%m-%d %H:%M:%S} {record.actor:<14} "
                f"{record.action:<22} {record.target or '-':<18} {record.decision:<12} {detail}"
            )
