"""`aiops audit verify | anchor | list`, and the start of the worker's AuditAnchorWorkflow."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
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
# when verify only tries Temporal: a stopped worker must not hold it up long
_PROBE_TIMEOUT = timedelta(seconds=5)

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


class TemporalAnchor(BaseModel):
    """What AuditAnchorWorkflow holds: its last checkpoint, and why it could not make a
    newer one (a broken chain, an unreachable database), empty when all is well."""

    latest: Checkpoint | None = None
    problem: str = ""


async def temporal_anchor(
    settings: Settings, timeout: timedelta = _QUERY_TIMEOUT
) -> TemporalAnchor:
    """AuditAnchorWorkflow's checkpoint and problem (needs a worker to answer)."""
    try:
        client = await asyncio.wait_for(connect(settings), timeout.total_seconds())
        handle = client.get_workflow_handle(ANCHOR_WORKFLOW_ID)
        latest = await handle.query(AuditAnchorWorkflow.latest, rpc_timeout=timeout)
        problem = await handle.query(AuditAnchorWorkflow.problem, rpc_timeout=timeout)
    except (RPCError, WorkflowQueryFailedError, TimeoutError, RuntimeError) as error:
        raise AuditCommandError(
            f"cannot ask {ANCHOR_WORKFLOW_ID} for its checkpoint: {error or type(error).__name__}"
        ) from None
    if latest is not None and not latest.signature_ok(audit_keys(settings).anchor):
        # an AnchorError, not "unreachable": verify must fail on it, never skip it
        raise AnchorError(f"{ANCHOR_WORKFLOW_ID}'s checkpoint is not signed with the audit key")
    return TemporalAnchor(latest=latest, problem=problem)


async def temporal_checkpoint(settings: Settings) -> Checkpoint | None:
    """The latest checkpoint AuditAnchorWorkflow holds (needs a worker to answer)."""
    return (await temporal_anchor(settings)).latest


class Verified(BaseModel):
    result: AuditVerification
    file_seq: int | None = None
    temporal: TemporalAnchor | None = None
    temporal_skipped: str = ""


async def _verify(settings: Settings, with_temporal: bool | None) -> Verified:
    """with_temporal: True requires AuditAnchorWorkflow's copy, None reads it when
    Temporal answers, False skips it. A copy that answers but is not signed with the audit
    key is an AnchorError either way."""
    in_file = anchor_file(settings).read()
    anchors = list(in_file)
    held: TemporalAnchor | None = None
    skipped = ""
    if with_temporal is False:
        skipped = "skipped (--no-temporal)"
    else:
        try:
            timeout = _QUERY_TIMEOUT if with_temporal else _PROBE_TIMEOUT
            held = await temporal_anchor(settings, timeout)
        except AiopsError as error:
            if with_temporal:
                raise
            skipped = f"not checked: {error}"
    if held is not None and held.latest is not None:
        if in_file and in_file[-1].seq < held.latest.seq:
            # the activity writes the file before the history records the result: a file
            # behind the workflow is an older copy put back, or one cut short
            raise AnchorError(
                f"{settings.audit_anchor_path} ends at row {in_file[-1].seq} but "
                f"{ANCHOR_WORKFLOW_ID} anchored row {held.latest.seq}: the file was "
                "replaced by an older copy or cut short"
            )
        anchors.append(held.latest)
    pool = await create_pool(resolve_database_url(settings), max_size=1)
    try:
        result = await AuditLog(pool, audit_keys(settings)).verify(anchors)
    finally:
        await pool.close()
    return Verified(
        result=result,
        file_seq=in_file[-1].seq if in_file else None,
        temporal=held,
        temporal_skipped=skipped,
    )


def _describe(verified: Verified, settings: Settings) -> str:
    result = verified.result
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
            f"no checkpoint in {settings.audit_anchor_path} or {ANCHOR_WORKFLOW_ID} yet: a "
            "deleted tail cannot be told from the end of the log"
        )
    else:
        parts.append(
            f"{result.anchors_checked} checkpoint(s) matched, last anchored row "
            f"{result.anchored_seq}"
        )
    if verified.temporal is not None:
        held = verified.temporal.latest
        parts.append(
            f"{ANCHOR_WORKFLOW_ID} holds row {held.seq}"
            if held
            else f"{ANCHOR_WORKFLOW_ID} holds no checkpoint yet"
        )
    else:
        parts.append(f"Temporal {verified.temporal_skipped}")
    return "; ".join(parts)


@app.command()
def verify(
    with_temporal: Annotated[
        bool | None,
        typer.Option(
            "--temporal/--no-temporal",
            help="check the checkpoint AuditAnchorWorkflow holds: by default when Temporal "
            "answers; --temporal requires it (a worker must be running), --no-temporal "
            "skips it",
            show_default=False,
        ),
    ] = None,
    allow_unanchored: Annotated[
        bool,
        typer.Option(
            "--allow-unanchored",
            help="exit 0 for an intact log no checkpoint vouches for (before the first "
            "anchor); without it such a log exits 2",
        ),
    ] = False,
) -> None:
    """Walk the keyed chain and check it against the checkpoints in the anchor file and in
    AuditAnchorWorkflow; exit 1 naming the first changed, forged or deleted row, exit 2
    when rows exist but no checkpoint anywhere vouches for them."""
    settings = load_settings()
    try:
        verified = asyncio.run(_verify(settings, with_temporal))
    except AnchorError as error:
        typer.echo(f"audit anchors BROKEN: {error}", err=True)
        raise typer.Exit(1) from None
    except AiopsError as error:  # --temporal and no answer, no database
        typer.echo(f"audit log not verified: {error}", err=True)
        raise typer.Exit(1) from None
    result = verified.result
    if verified.temporal is not None and verified.temporal.problem:
        typer.echo(f"{ANCHOR_WORKFLOW_ID} cannot anchor: {verified.temporal.problem}", err=True)
    if not result.ok:
        typer.echo(f"audit log BROKEN at row {result.broken_seq}: {result.reason}", err=True)
        raise typer.Exit(1)
    if result.rows and result.anchored_seq is None and not allow_unanchored:
        typer.echo(
            f"audit log UNANCHORED: {result.rows} rows and no checkpoint in "
            f"{settings.audit_anchor_path} or {ANCHOR_WORKFLOW_ID} "
            f"(Temporal {verified.temporal_skipped or 'holds none'}): a log rewritten "
            "whole, or cut short, cannot be told from an intact one. Run `aiops audit "
            "anchor` (or the worker), verify where the anchor file is, or pass "
            "--allow-unanchored",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(_describe(verified, settings))


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
