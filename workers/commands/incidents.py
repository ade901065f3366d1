"""Operator commands on running and past incidents: list, approve, retry, replay."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHistory,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Replayer

from aiops import search_attributes as sa
from aiops.auth import ApprovalRefused, ApprovalSigner, AuthError, Role
from aiops.auth.keys import approval_key, token_verifier
from aiops.auth.pending import signed_decision
from aiops.config import get_settings
from aiops.errors import AiopsError
from aiops.incident_list import list_incidents
from aiops.models.healing import ApprovalDecision, HealingInput
from aiops.temporal_client import connect, data_converter
from workflows import ALL_WORKFLOWS


class IncidentCommandError(AiopsError):
    pass


def incidents(
    include_closed: Annotated[
        bool, typer.Option("--all", help="include closed incidents, not only running ones")
    ] = False,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List incidents (IncidentWorkflow runs) with their service, phase and outcome."""

    async def run() -> list[dict[str, Any]]:
        return await list_incidents(await connect(get_settings()), include_closed, limit)

    rows = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no incidents" + ("" if include_closed else " running (--all shows closed)"))
        return
    for row in rows:
        waiting = f" [approve step {row['pending_approval']}]" if row["pending_approval"] else ""
        typer.echo(
            f"{row['workflow_id']:<34} {row['status']:<11} {row['phase'] or '-':<12} "
            f"{row['outcome'] or '-':<12} {row['service'] or '-':<16} {row['summary']}{waiting}"
        )


def _token_sub(token: str) -> str | None:
    """The sub a token claims, unverified: only to catch a mismatching --approver before
    the server (which verifies it) is asked."""
    import jwt

    try:
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return str(sub) if sub is not None else None


def _approve_via_api(
    api_url: str, token: str, workflow_id: str, approved: bool, reason: str, action_id: str | None
) -> str:
    import httpx

    url = f"{api_url.rstrip('/')}/incidents/{quote(workflow_id, safe='')}/approve"
    try:
        response = httpx.post(
            url,
            json={"approved": approved, "reason": reason, "action_id": action_id},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
    except httpx.HTTPError as error:
        raise IncidentCommandError(f"cannot reach AIOPS_API_URL {api_url}: {error}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        detail = body.get("detail") if isinstance(body, dict) else None
        raise IncidentCommandError(
            f"{workflow_id}: {detail or response.text[:300]} (HTTP {response.status_code})"
        )
    return str(body["result"])


async def _decide(client: Client, workflow_id: str, decision: ApprovalDecision) -> str:
    handle = client.get_workflow_handle(workflow_id)
    try:
        result: str = await handle.execute_update("decide", decision, result_type=str)
    except Exception as error:  # the validator's message is the useful part
        cause = getattr(error, "cause", None) or error
        raise IncidentCommandError(f"{workflow_id}: {cause}") from None
    return result


def approve(
    workflow_id: Annotated[str, typer.Argument(help="incident-<fingerprint> or a healing id")],
    approver: Annotated[
        str | None,
        typer.Option(
            "--approver",
            help="who decides (audited); with AIOPS_TOKEN the token's sub, which this must "
            "match if given; without a token (open mode only) required",
        ),
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="reject instead of approve")] = False,
    reason: Annotated[str, typer.Option(help="why (audited)")] = "",
    action_id: Annotated[
        str | None, typer.Option("--action-id", help="the step to decide; default: the pending one")
    ] = None,
) -> None:
    """Approve (or --reject) the critical action an incident is waiting on.

    With AIOPS_TOKEN (a token with the approver role: `export AIOPS_TOKEN=$(aiops token
    create --role approver --sub you)`) the decision is signed for the token's verified
    identity: by `aiops api` when AIOPS_API_URL is set, else here (which needs the server's
    AIOPS_SECRET_KEY). AIOPS_APPROVALS=signed requires the token. Without it (open mode,
    the dev stack) --approver names who decides, unverified.

    Uses the workflow's `decide` update, so a bad decision is refused before it reaches
    the history. In open mode the same decision can be sent with the plain CLI:
    temporal workflow signal --workflow-id ID --name approve
    --input '{"approver": "me", "approved": true, "reason": "", "action_id": null}'
    """
    settings = get_settings()
    token = settings.token.get_secret_value().strip() if settings.token is not None else None
    if token is None:
        if settings.approvals_mode == "signed":
            raise IncidentCommandError(
                "AIOPS_APPROVALS=signed: an approval must come from a verified approver: "
                "export AIOPS_TOKEN=$(aiops token create --role approver --sub you)"
            )
        if not approver or not approver.strip():
            raise IncidentCommandError(
                "--approver NAME is required without AIOPS_TOKEN (or export AIOPS_TOKEN=$(aiops "
                "token create --role approver --sub you))"
            )
        plain = ApprovalDecision(
            approver=approver, approved=not reject, reason=reason, action_id=action_id
        )

        async def run_plain() -> str:
            return await _decide(await connect(settings), workflow_id, plain)

        typer.echo(asyncio.run(run_plain()))
        return

    if settings.api_url:
        claimed = _token_sub(token)
        if approver is not None and claimed is not None and approver != claimed:
            raise IncidentCommandError(
                f"--approver {approver} is not AIOPS_TOKEN's subject {claimed}: leave "
                "--approver out or use that person's token"
            )
        typer.echo(
            _approve_via_api(settings.api_url, token, workflow_id, not reject, reason, action_id)
        )
        return

    try:
        identity = token_verifier(settings).verify(token)
    except AuthError as error:
        raise IncidentCommandError(f"AIOPS_TOKEN is not accepted: {error}") from None
    if approver is not None and approver != identity.sub:
        raise IncidentCommandError(
            f"--approver {approver} is not AIOPS_TOKEN's subject {identity.sub}: leave "
            "--approver out or use that person's token"
        )
    if not identity.can(Role.APPROVER):
        raise IncidentCommandError(
            f"{identity.sub} has no approver role (roles: "
            f"{', '.join(r.value for r in identity.roles) or 'none'})"
        )

    async def run_signed() -> str:
        client = await connect(settings)
        try:
            decision = await signed_decision(
                client,
                ApprovalSigner(approval_key(settings)),
                identity,
                workflow_id,
                approved=not reject,
                reason=reason,
                action_id=action_id,
                ttl=timedelta(seconds=settings.approval_timeout_s),
            )
        except ApprovalRefused as error:
            raise IncidentCommandError(str(error)) from None
        return await _decide(client, workflow_id, decision)

    typer.echo(asyncio.run(run_signed()))


async def _healing_input(client: Client, workflow_id: str) -> tuple[HealingInput, str]:
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    if description.workflow_type != "HealingWorkflow":
        raise IncidentCommandError(
            f"{workflow_id} is a {description.workflow_type}; retry takes a HealingWorkflow id "
            "(see the incident's status query or `aiops incidents --all`)"
        )
    if description.status == WorkflowExecutionStatus.RUNNING:
        raise IncidentCommandError(f"{workflow_id} is still running; retry a finished run")
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (decoded,) = await client.data_converter.decode(started.input.payloads, [HealingInput])
    assert isinstance(decoded, HealingInput)
    return decoded, started.task_queue.name


def retry(
    workflow_id: Annotated[str, typer.Argument(help="the HealingWorkflow run to retry")],
) -> None:
    """Start a new HealingWorkflow with the failed run's plan (read from its history)."""

    async def run() -> str:
        client = await connect(get_settings())
        plan_input, queue = await _healing_input(client, workflow_id)
        new_id = f"{workflow_id.split('-retry-')[0]}-retry-{uuid.uuid4().hex[:6]}"
        retried = plan_input.model_copy(update={"retry_of": workflow_id})
        attrs = [SearchAttributePair(sa.PHASE, "healing")]
        if plan_input.plan.service:
            attrs.append(SearchAttributePair(sa.SERVICE, plan_input.plan.service))
        await client.start_workflow(
            "HealingWorkflow",
            retried,
            id=new_id,
            task_queue=queue,
            memo={"retry_of": workflow_id, "summary": f"retry of {workflow_id}"},
            search_attributes=TypedSearchAttributes(attrs),
        )
        return new_id

    typer.echo(f"started {asyncio.run(run())} (retry of {workflow_id})")


def replay(
    workflow_id: Annotated[
        str | None, typer.Argument(help="replay this workflow's history from the server")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="replay every *.json history in this directory (ID.json and ID@note.json "
            "replay as workflow ID)",
        ),
    ] = None,
) -> None:
    """Replay histories against the current workflow code; non-zero exit on a divergence."""
    if (workflow_id is None) == (directory is None):
        raise IncidentCommandError("give a WORKFLOW_ID or --dir, not both and not neither")
    # the converter every process uses: with AIOPS_PAYLOAD_KEY, encrypted histories replay
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=data_converter(get_settings()))

    async def run() -> list[str]:
        if directory is not None:
            files = sorted(directory.glob("*.json"))
            if not files:
                raise IncidentCommandError(f"no *.json histories in {directory}")
            # ID.json and ID@note.json replay as workflow ID (several histories of one id)
            histories = [
                (f.stem, WorkflowHistory.from_json(f.stem.split("@", 1)[0], f.read_text()))
                for f in files
            ]
        else:
            client = await connect(get_settings())
            history = await client.get_workflow_handle(workflow_id).fetch_history()  # type: ignore[arg-type]
            histories = [(history.workflow_id, history)]
        failed: list[str] = []
        for name, history in histories:
            result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            verdict = "ok" if result.replay_failure is None else f"FAILED: {result.replay_failure}"
            if result.replay_failure is not None:
                failed.append(name)
            typer.echo(f"{name}: {verdict}")
        return failed

    failed = asyncio.run(run())
    if failed:
        raise IncidentCommandError(f"{len(failed)} history(ies) no longer replay: {failed}")
