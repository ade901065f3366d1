"""`aiops limits show | set | reset`: limits running processes pick up within seconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from aiops.audit import AuditEntry, AuditLog
from aiops.audit.records import cli_actor
from aiops.config import get_settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url
from aiops.monitor.limits import LIMITS, REFRESH_S, LimitsStore, RuntimeLimits, default_limits

app = typer.Typer(
    help=(
        "Limits changed while processes run (the seed's set_max_agents, set_cache_size); "
        f"running processes re-read them every {REFRESH_S:g} s."
    ),
    no_args_is_help=True,
)

T = TypeVar("T")


def _with_store(
    work: Callable[[LimitsStore], Awaitable[T]],
    audit: Callable[[T], AuditEntry] | None = None,
) -> T:
    """Run `work`; with `audit`, append the row it makes of the result (changes only)."""
    settings = get_settings()

    async def run() -> T:
        pool = await create_pool(resolve_database_url(settings), max_size=2)
        try:
            result = await work(LimitsStore(pool, default_limits(settings)))
            if audit is not None:
                await AuditLog(pool).append(audit(result))
            return result
        finally:
            await pool.close()

    return asyncio.run(run())


def _print(limits: RuntimeLimits, overrides: dict[str, int], as_json: bool) -> None:
    if as_json:
        rows = {
            name: {"value": value, "set": name in overrides, "honoured_by": LIMITS[name]}
            for name, value in limits.model_dump().items()
        }
        typer.echo(json.dumps(rows, indent=2))
        return
    for name, value in limits.model_dump().items():
        origin = "set" if name in overrides else "default"
        typer.echo(f"{name:<20} {value:>10}  {origin:<7}  {LIMITS[name]}")


@app.command()
def show(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Every limit, whether it was set or is the default, and what honours it."""

    async def work(store: LimitsStore) -> tuple[RuntimeLimits, dict[str, int]]:
        return await store.read(), await store.overrides()

    limits, overrides = _with_store(work)
    _print(limits, overrides, as_json)


@app.command("set")
def set_limit(
    name: Annotated[str, typer.Argument(help=", ".join(LIMITS))],
    value: Annotated[int, typer.Argument(help="the new value")],
) -> None:
    """Change a limit now; processes pick it up within seconds."""

    async def work(store: LimitsStore) -> RuntimeLimits:
        return await store.set(name, value)

    def audit(limits: RuntimeLimits) -> AuditEntry:
        return AuditEntry(
            actor=cli_actor(get_settings()),
            action="limits",
            target=name,
            decision="set",
            details={"value": getattr(limits, name), "via": "cli"},
        )

    limits = _with_store(work, audit)
    typer.echo(f"{name} = {getattr(limits, name)}")


@app.command()
def reset(
    name: Annotated[str | None, typer.Argument(help="one limit; all when left out")] = None,
) -> None:
    """Back to the default from settings."""

    async def work(store: LimitsStore) -> RuntimeLimits:
        return await store.reset(name)

    def audit(limits: RuntimeLimits) -> AuditEntry:
        values = limits.model_dump()
        return AuditEntry(
            actor=cli_actor(get_settings()),
            action="limits",
            target=name or "*",
            decision="reset",
            details={"defaults": {k: v for k, v in values.items() if name in (None, k)}},
        )

    limits = _with_store(work, audit)
    for key, value in limits.model_dump().items():
        if name is None or key == name:
            typer.echo(f"{key} = {value} (default)")
