"""`aiops tools list | show | requests | draft | build | trial | approve | retire`: tools
built from primitive actions. A built tool is proposed until an admin approves it; every
draft, trial and decision is audited, and in signed mode only an admin's AIOPS_TOKEN may
make one. Approval and trials name the version the admin read (--version)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any, cast

import asyncpg
import typer

from aiops.actions.base import Adapter
from aiops.actions.executor import ActionExecutor
from aiops.actions.guard import ActionGuard
from aiops.actions.http import HttpAdapter
from aiops.actions.process import ProcessAdapter
from aiops.actions.redis_commands import RedisAdapter
from aiops.actions.simulated import SimulatedAdapter
from aiops.auth.approvals import ApprovalSigner
from aiops.auth.keys import approval_key, token_verifier
from aiops.auth.roles import Identity, Role
from aiops.config import Settings, get_settings
from aiops.diagnosis.chat import ChatModel
from aiops.embeddings import get_embedder
from aiops.knowledge import KnowledgeGraph
from aiops.policy import PolicyFile
from aiops.registry import ServiceRegistry
from aiops.registry.secrets import load_fernet
from aiops.tools import lifecycle
from aiops.tools.builder import BuildReport, ToolBuilder
from aiops.tools.drafting import LlmDrafter
from aiops.tools.models import ToolDraft, ToolRecord, ToolRequest, ToolStatus
from aiops.tools.spec import parse_spec
from aiops.tools.store import ToolError, ToolStore
from aiops.tools.trial import TrialApprover
from workers.commands.pooled import with_pool
from workers.commands.services import registry_actor

app = typer.Typer(
    help="Tools: named, parameterised sequences of primitive actions, built from what healed "
    "repeatedly or from what a fix asks for; proposed until an admin approves them.",
    no_args_is_help=True,
)

_STATUSES = ("proposed", "approved", "retired", "refused")


def _approver(settings: Settings, actor: str) -> TrialApprover:
    """The admin running `aiops tools trial` approves its steps on staging: signed with the
    server's key for their token's identity, or unsigned in open mode."""
    signer = ApprovalSigner(approval_key(settings))
    if settings.token is not None:
        identity = token_verifier(settings).verify(settings.token.get_secret_value())
        return TrialApprover(identity, signer)
    return TrialApprover(Identity(sub=actor, roles=[Role.ADMIN]))


def builder(pool: asyncpg.Pool, settings: Settings) -> ToolBuilder:
    """What a staging trial needs is what a worker acts with: the registry, the guard on
    the server's policy, the adapters (simulated too when AIOPS_SIMULATED_ADAPTER=1)."""
    registry = ServiceRegistry(pool, load_fernet(settings))
    adapters: dict[str, Adapter] = {
        "process": ProcessAdapter(registry, settings.home_dir / "logs" / "services"),
        "http": HttpAdapter(),
        "redis": RedisAdapter(),
    }
    if settings.simulated_adapter:
        adapters["simulated"] = SimulatedAdapter()
    policy = PolicyFile(settings.policy_file)
    guard = ActionGuard(
        pool,
        registry,
        policy,
        ApprovalSigner(approval_key(settings)),
        settings.approvals_mode,
        frozenset(adapters),
    )
    drafter = None
    if settings.llm_model:
        drafter = LlmDrafter(
            ChatModel(
                settings.llm_model,
                settings.openai_base_url,
                settings.openai_api_key,
                settings.llm_timeout_s,
            )
        )
    return ToolBuilder(
        ToolStore(pool),
        registry,
        policy,
        ActionExecutor(pool, registry, adapters, guard),
        drafter,
        min_runs=settings.tool_mine_min_runs,
        require_approval=settings.tool_mine_require_approval,
    )


def _row(record: ToolRecord, outcomes: tuple[int, int]) -> dict[str, Any]:
    attempts, successes = outcomes
    return {
        "name": record.name,
        "version": record.version,
        "status": record.status,
        "origin": record.origin,
        "description": record.spec.description,
        "steps": [s.action_type for s in record.spec.steps],
        "problem_id": record.problem_id,
        "service": record.service,
        "attempts": attempts,
        "successes": successes,
        "success_rate": successes / attempts if attempts else None,
        "decided_by": record.decided_by,
        "refused": record.validation.refusal(),
    }


def _rate(row: dict[str, Any]) -> str:
    if not row["attempts"]:
        return "untried"
    return f"{row['successes']}/{row['attempts']} healed"


@app.command("list")
def list_tools(
    status: Annotated[str | None, typer.Option(help=f"only {'|'.join(_STATUSES)}")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Tools with their status, steps and learned success."""
    if status is not None and status not in _STATUSES:
        raise ToolError(f"unknown status {status!r}: use one of {', '.join(_STATUSES)}")

    async def work(pool: asyncpg.Pool) -> list[dict[str, Any]]:
        store = ToolStore(pool)
        records = await store.find(cast(ToolStatus | None, status))
        return [_row(r, await store.outcomes(r.name)) for r in records]

    rows = with_pool(work)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no tools" + (f" {status}" if status else ""))
        return
    for row in rows:
        typer.echo(
            f"{row['name']:<32} v{row['version']:<3} {row['status']:<9} {row['origin']:<7} "
            f"{_rate(row):<14} {' > '.join(row['steps'])}"
        )


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="the tool's name")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A tool's specification (YAML), its validation and its record."""

    async def work(pool: asyncpg.Pool) -> tuple[ToolRecord, tuple[int, int]]:
        store = ToolStore(pool)
        record = await store.require(name)
        return record, await store.outcomes(name)

    record, outcomes = with_pool(work)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    **_row(record, outcomes),
                    "spec": record.spec.model_dump(mode="json"),
                    "validation": record.validation.model_dump(mode="json"),
                },
                indent=2,
            )
        )
        return
    row = _row(record, outcomes)
    typer.echo(
        f"# {record.name} v{record.version}: {record.status} ({record.origin}), {_rate(row)}"
    )
    if record.decided_by:
        typer.echo(f"# decided by {record.decided_by} at {record.decided_at:%Y-%m-%d %H:%M}")
    for check in record.validation.checks:
        mark = "skipped" if check.skipped else "ok" if check.ok else "REFUSED"
        typer.echo(f"# {check.stage}: {mark}: {check.detail}")
    typer.echo(record.spec_yaml.rstrip())


@app.command()
def requests() -> None:
    """Actions known fixes asked for that no adapter and no tool offers (diagnosis records
    them; `aiops tools build` drafts them)."""

    async def work(pool: asyncpg.Pool) -> list[ToolRequest]:
        return await ToolStore(pool).requests()

    found = with_pool(work)
    if not found:
        typer.echo("no requests")
    for r in found:
        typer.echo(
            f"{r.action_type:<28} seen {r.seen_count:>4}x  for {r.problem_description!r}"
            f" (fix {r.solution_description!r}, service {r.service or '-'})"
        )


def _print_built(report: BuildReport) -> None:
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    if not report.built:
        typer.echo("nothing new to build")
    for record in report.built:
        why = f": {record.validation.refusal()}" if record.status == "refused" else ""
        typer.echo(f"{record.name} v{record.version}: {record.status}{why}")


@app.command()
def draft(
    file: Annotated[Path, typer.Argument(help="the tool's YAML specification")],
    service: Annotated[
        str | None, typer.Option(help="the service it is for: bounds, staging trial")
    ] = None,
    problem: Annotated[
        str | None, typer.Option(help="the known problem (id) it fixes: planned on approval")
    ] = None,
) -> None:
    """Validate a hand-written specification and store it: proposed, or refused with why."""
    try:
        text = file.read_text()
    except OSError as error:
        raise ToolError(f"cannot read {file}: {error.strerror}") from None
    spec = parse_spec(text)
    if problem is not None:
        try:
            problem = str(uuid.UUID(problem))
        except ValueError:
            raise ToolError(
                f"--problem {problem!r} is not a problem id (aiops kg search)"
            ) from None
    settings = get_settings()
    actor = registry_actor(settings, what="tool")

    async def work(pool: asyncpg.Pool) -> BuildReport:
        made = ToolDraft(spec=spec, origin="manual", problem_id=problem, service=service)
        return BuildReport(built=[await builder(pool, settings).submit(made, actor)])

    _print_built(with_pool(work))


@app.command()
def build() -> None:
    """Draft tools from both triggers: sequences approved and healed repeatedly
    (AIOPS_TOOL_MINE_MIN_RUNS) and actions fixes asked for; each is validated and stored
    proposed (or refused, with why). A staging step the policy makes wait for a person is
    approved by nobody here: the tool waits for `aiops tools trial`."""
    settings = get_settings()
    actor = registry_actor(settings, what="tool")

    async def work(pool: asyncpg.Pool) -> BuildReport:
        return await builder(pool, settings).build(actor)

    _print_built(with_pool(work))


_VERSION_HELP = "the version you read (aiops tools show NAME); another one is refused"


@app.command()
def trial(
    name: Annotated[str, typer.Argument(help="the tool's name")],
    version: Annotated[int, typer.Option(help=_VERSION_HELP)],
) -> None:
    """Run a tool's staging trial again, approving as yourself the steps the policy makes
    wait for a person (a build never approves them). Admin only, after reading the spec."""
    settings = get_settings()
    actor = registry_actor(settings, what="tool")
    approver = _approver(settings, actor)

    async def work(pool: asyncpg.Pool) -> ToolRecord:
        return await builder(pool, settings).trial(name, version, approver)

    record = with_pool(work)
    why = f": {record.validation.refusal()}" if record.status == "refused" else ""
    typer.echo(f"{record.name} v{record.version}: {record.status}{why} (trial by {actor})")


@app.command()
def approve(
    name: Annotated[str, typer.Argument(help="the tool's name")],
    version: Annotated[int, typer.Option(help=_VERSION_HELP)],
    reason: Annotated[str, typer.Option(help="why (audited)")] = "",
) -> None:
    """Approve a proposed tool: diagnosis may plan with it from now on. Admin only."""
    settings = get_settings()
    actor = registry_actor(settings, what="tool")

    async def work(pool: asyncpg.Pool) -> ToolRecord:
        def graph() -> KnowledgeGraph:
            return KnowledgeGraph(pool, get_embedder(settings), settings.similarity_threshold)

        return await lifecycle.approve(ToolStore(pool), name, actor, reason, graph, version=version)

    record = with_pool(work)
    planned = f"; planned for problem {record.problem_id}" if record.problem_id else ""
    typer.echo(f"approved {record.name} v{record.version} (by {actor}){planned}")


@app.command()
def retire(
    name: Annotated[str, typer.Argument(help="the tool's name")],
    reason: Annotated[str, typer.Option(help="why (audited)")] = "",
    version: Annotated[
        int | None, typer.Option(help="the version you mean; another one is refused")
    ] = None,
) -> None:
    """Retire a tool: diagnosis passes over the fixes that use it. Admin only."""
    actor = registry_actor(get_settings(), what="tool")

    async def work(pool: asyncpg.Pool) -> ToolRecord:
        return await lifecycle.retire(ToolStore(pool), name, actor, reason, version=version)

    record = with_pool(work)
    typer.echo(f"retired {record.name} v{record.version} (by {actor})")
