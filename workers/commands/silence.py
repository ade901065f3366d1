"""`aiops silence add | list | expire`: hold incidents back during a deploy or a window."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import typer

from aiops.auth.roles import Role
from aiops.config import get_settings
from aiops.silences import Silence, SilenceStore
from aiops.silences.store import parse_duration, parse_matchers
from workers.commands.pooled import with_pool
from workers.commands.services import registry_actor

app = typer.Typer(
    help=(
        "Silences: matching events are stored and counted as always, but their incidents "
        "neither act nor notify until the silence ends (then they go on if the problem is "
        "still there). Recurring windows: a service's registry metadata "
        "maintenance: [{cron, for, reason}]."
    ),
    no_args_is_help=True,
)


def _line(silence: Silence) -> str:
    what = " ".join(f"{k}={v}" for k, v in silence.matchers.items()) or "every event"
    state = "expired" if silence.expired_at else f"until {silence.ends_at:%Y-%m-%d %H:%M:%S %Z}"
    return (
        f"{silence.id}  {silence.service or '(every service)'}  {what}  {state}  "
        f"{silence.reason} ({silence.created_by})"
    )


@app.command()
def add(
    duration: Annotated[str, typer.Option("--for", help="how long: 30m, 2h, 1d")],
    reason: Annotated[str, typer.Option(help="why (audited, shown in incidents)")],
    service: Annotated[
        str | None, typer.Option("--service", help="this service only; default: every one")
    ] = None,
    match: Annotated[
        list[str] | None,
        typer.Option(
            "--match",
            help="event_type=..., source=..., severity=... or label.<name>=... (repeatable; "
            "all must hold)",
        ),
    ] = None,
) -> None:
    """Silence a service (or everything) for a while; prints the silence's id."""
    length = parse_duration(duration)
    matchers = parse_matchers(match or [])
    actor = registry_actor(get_settings(), Role.OPERATOR, "silence")

    async def work(pool: asyncpg.Pool) -> Silence:
        return await SilenceStore(pool).add(
            service=service, matchers=matchers, duration=length, reason=reason, created_by=actor
        )

    typer.echo(_line(with_pool(work)))


@app.command("list")
def list_silences(
    include_ended: Annotated[bool, typer.Option("--all", help="ended ones too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Active silences (with --all, the ended ones too), soonest end first."""

    async def work(pool: asyncpg.Pool) -> list[Silence]:
        store = SilenceStore(pool)
        return await (store.all() if include_ended else store.active())

    found = with_pool(work)
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
        return
    if not found:
        typer.echo("no silences" + ("" if include_ended else " active (--all shows ended)"))
    now = datetime.now(UTC)
    for silence in found:
        ended = silence.expired_at is not None or silence.ends_at <= now
        typer.echo(_line(silence) + ("  [ended]" if ended and not silence.expired_at else ""))


@app.command()
def expire(silence_id: Annotated[str, typer.Argument(help="the id `silence add` printed")]) -> None:
    """End a silence now: held incidents go on within a minute."""
    actor = registry_actor(get_settings(), Role.OPERATOR, "silence")

    async def work(pool: asyncpg.Pool) -> Silence:
        return await SilenceStore(pool).expire(silence_id, actor)

    typer.echo(f"expired: {_line(with_pool(work))}")
