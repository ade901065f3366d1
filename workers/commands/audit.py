"""`aiops audit verify | anchor | list`, and the start of the worker's AuditAnchorWorkflow."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Annotated, Any

import typer
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from aiops.audit import (
    AnchorError,
    AnchorFile,
    AuditLog,
    AuditRecord,
    AuditVerification,
    Checkpoint,
    audit_keys,
)
from aiops.audit.anchors import ANCHOR_WORKFLOW, ANCHOR_WORKFLOW_ID, AnchorRun
from aiops.config import Settings, load_settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url
from aiops.errors import AiopsError
from aiops.temporal_client import connect
from workflows.audit import AuditAnchorWorkflow

_QUERY_TIMEOUT = timedelta(seconds=20)

app = typer.Typer(
    help="The append-only, keyed (HMAC) audit log of every decision, approval and action.",
    no_args_is_help=True,
)


class AuditCommandError(AiopsError):
    pass


def anchor_file(settings: Settings) -> AnchorFile:
    return AnchorFile(settings.audit_anchor_path, audit_keys(settings).anchor)


async def start_anchor_workflow(
    client: Client, settings: Settings, budget: int = AnchorRun.model_fields["budget"].default
) -> WorkflowHandle[Any, Any]:
    """Start AuditAnchorWorkflow, or tell the running one this worker's interval: one
    workflow per namespace whichever worker starts first (signal-with-start, fixed id)."""
    return await client.start_workflow(
        ANCHOR_WORKFLOW,
        AnchorRun(interval_s=settings.audit_anchor_interval_s, budget=budget),
        id=ANCHOR_WORKFLOW_ID,
        task_queue=settings.temporal_task_queue,
        start_signal="configure",
        start_signal_args=[settings.audit_anchor_interval_s],
    )


async def temporal_checkpoint(settings: Settings) -> Checkpoint | None:
    """The latest checkpoint AuditAnchorWorkflow holds (needs a worker to answer)."""
    client = await connect(settings)
    try:
        handle = client.get_workflow_handle(ANCHOR_WORKFLOW_ID)
        latest = await handle.query(AuditAnchorWorkflow.latest, rpc_timeout=_QUERY_TIMEOUT)
    except RPCError as error:
        raise AuditCommandError(
            f"cannot ask {ANCHOR_WORKFLOW_ID} for its checkpoint: {error}"
        ) from None
    if latest is not None and not latest.signature_ok(audit_keys(settings).anchor):
        raise AuditCommandError(
            f"{ANCHOR_WORKFLOW_ID}'s checkpoint is not signed with the audit key"
        )
    return latest


async def _verify(settings: Settings, with_temporal: bool) -> AuditVerification:
    anchors = anchor_file(settings).read()
    if with_temporal:
        held = await temporal_checkpoint(settings)
        if held is not None:
            anchors = [*anchors, held]
    pool = await create_pool(resolve_database_url(settings), max_size=1)
    try:
        return await AuditLog(pool, audit_keys(settings)).verify(anchors)
    finally:
        await pool.close()


def _describe(result: AuditVerification, settings: Settings) -> str:
    parts = [f"audit log intact: {result.rows} rows"]
    keyed = result.rows - result.legacy_rows
    if result.legacy_rows:
        parts.append(
            f"rows 1..{result.legacy_rows} are legacy (plain SHA-256, written before the "
            f"chain was keyed: anyone could have recomputed them), {keyed} HMAC-verified"
        )
    else:
        parts.append("HMAC chain verified")
    if result.anchored_seq is None:
        parts.append(
            f"no checkpoint in {settings.audit_anchor_path} yet: a deleted tail cannot be "
            "told from the end of the log"
        )
    else:
        parts.append(
            f"{result.anchors_checked} checkpoint(s) matched, last anchored row "
            f"{result.anchored_seq}"
        )
    return "; ".join(parts)


@app.command()
def verify(
    with_temporal: Annotated[
        bool,
        typer.Option(
            "--temporal",
            help="also check the checkpoint AuditAnchorWorkflow holds (a worker must be running)",
        ),
    ] = False,
) -> None:
    """Walk the keyed chain and check it against the checkpoints; exit 1 naming the first
    changed, forged or deleted row."""
    settings = load_settings()
    try:
        result = asyncio.run(_verify(settings, with_temporal))
    except AnchorError as error:
        typer.echo(f"audit anchors BROKEN: {error}", err=True)
        raise typer.Exit(1) from None
    if result.ok:
        typer.echo(_describe(result, settings))
        return
    typer.echo(f"audit log BROKEN at row {result.broken_seq}: {result.reason}", err=True)
    raise typer.Exit(1)


@app.command()
def anchor() -> None:
    """Verify the rows since the last checkpoint and anchor the head now (the worker's
    AuditAnchorWorkflow does this every AIOPS_AUDIT_ANCHOR_INTERVAL_S)."""
    settings = load_settings()
    anchors = anchor_file(settings)

    async def run() -> Checkpoint | AuditVerification:
        pool = await create_pool(resolve_database_url(settings), max_size=1)
        try:
            return await AuditLog(pool, audit_keys(settings)).checkpoint(anchors.latest())
        finally:
            await pool.close()

    try:
        made = asyncio.run(run())
        if isinstance(made, AuditVerification):
            typer.echo(
                f"not anchored: audit log BROKEN at row {made.broken_seq}: {made.reason}",
                err=True,
            )
            raise typer.Exit(1)
        written = anchors.append(made)
    except AnchorError as error:
        typer.echo(f"audit anchors BROKEN: {error}", err=True)
        raise typer.Exit(1) from None
    state = "anchored" if written else "already anchored"
    typer.echo(f"{state}: row {made.seq} in {anchors.path}")


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
