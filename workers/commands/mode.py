"""`aiops mode set | show | clear`: how far aiops may go, globally and per service."""

from __future__ import annotations

import json
from typing import Annotated, cast

import asyncpg
import typer

from aiops.auth.tokens import parse_ttl
from aiops.config import get_settings
from aiops.errors import AiopsError
from aiops.modes import GLOBAL, MODES, Mode, ModeStore
from aiops.modes.report import ShadowReport, shadow_report
from aiops.temporal_client import connect
from workers.commands.pooled import with_pool
from workers.commands.services import registry_actor

app = typer.Typer(
    help=(
        "Operating modes: act (as the policy says), approve-all (every action waits for a "
        "person) or shadow (plan and record what would run; run nothing, learn nothing). "
        "A service's own mode wins over the global one."
    ),
    no_args_is_help=True,
)


class ModeError(AiopsError):
    exit_code = 2


@app.command("set")
def set_mode(
    mode: Annotated[str, typer.Argument(help=f"one of {', '.join(MODES)}")],
    service: Annotated[
        str | None, typer.Option("--service", help="this service only; default: every service")
    ] = None,
    reason: Annotated[str, typer.Option(help="why (audited)")] = "",
) -> None:
    """Set the mode of one service (--service) or of all; audited, admin only in signed mode."""
    if mode not in MODES:
        raise ModeError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    actor = registry_actor(get_settings())
    scope = service or GLOBAL

    async def work(pool: asyncpg.Pool) -> None:
        await ModeStore(pool).set(scope, cast(Mode, mode), actor, reason)

    with_pool(work)
    where = f"service {service}" if service else "every service without a mode of its own"
    typer.echo(f"mode {mode} for {where} (set by {actor})")


@app.command()
def clear(
    service: Annotated[
        str | None, typer.Option("--service", help="this service's own mode; default: global")
    ] = None,
) -> None:
    """Remove a mode: the service follows the global one again (or act, for the global)."""
    actor = registry_actor(get_settings())
    scope = service or GLOBAL

    async def work(pool: asyncpg.Pool) -> bool:
        return await ModeStore(pool).clear(scope, actor)

    if not with_pool(work):
        raise ModeError(f"no mode was set for {service or 'every service (global)'}")
    typer.echo(f"cleared the mode of {service or 'every service (global)'}")


@app.command()
def show(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The global mode and every service's own."""

    async def work(pool: asyncpg.Pool) -> list[dict[str, object]]:
        return [s.model_dump(mode="json") for s in await ModeStore(pool).all()]

    rows = with_pool(work)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not any(r["scope"] == GLOBAL for r in rows):
        typer.echo(f"{'(global)':<24} act          (the default)")
    for row in rows:
        scope = "(global)" if row["scope"] == GLOBAL else str(row["scope"])
        typer.echo(f"{scope:<24} {row['mode']!s:<12} set by {row['set_by']}: {row['reason']}")


shadow_app = typer.Typer(
    help="What aiops would have done where it only watched (services in shadow mode).",
    no_args_is_help=True,
)


@shadow_app.command()
def report(
    since: Annotated[str, typer.Option(help="how far back: 7d, 24h, 90m")] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """For each shadowed incident: what aiops would have run (each step with its policy
    decision), the fix's learned success rate, and how the incident really ended (resolved
    at its source, the service healthy again, or no sign it ended)."""
    window = parse_ttl(since)
    settings = get_settings()

    async def work(pool: asyncpg.Pool) -> ShadowReport:
        return await shadow_report(await connect(settings), pool, window)

    found = with_pool(work)
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
        return
    for item in found.incidents:
        rate = (
            f"{item.solution_success_rate:.0%} of {item.solution_attempts}"
            if item.solution_success_rate is not None
            else "untried"
        )
        typer.echo(f"{item.workflow_id}  {item.service or '-'}: {item.problem}")
        typer.echo(f"  would have run: {item.plan or 'nothing (no known fix)'} ({rate})")
        for step in item.would_run:
            typer.echo(f"    step {step.step}: {step.action} -> {step.verdict}: {step.reason}")
        typer.echo(f"  ended: {item.ended}")
    typer.echo(found.line())
