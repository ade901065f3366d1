"""`aiops dev up | down | status`."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from aiops.config import get_settings
from aiops.devstack import DevStackState
from aiops.endpoints import dev_stack_for

app = typer.Typer(
    help=(
        "The embedded dev stack under AIOPS_HOME: the Temporal dev server (gRPC :7233, Web UI "
        ":8233, SQLite), PostgreSQL 18 with pgvector (:5434) and Redis with AOF (:6382), all "
        "from PyPI packages. Commands use it whenever TEMPORAL_ADDRESS, DATABASE_URL or "
        "REDIS_URL are unset."
    ),
    no_args_is_help=True,
)

_LABELS = {"temporal": "Temporal", "postgres": "PostgreSQL", "redis": "Redis"}


def _print_exports(state: DevStackState) -> None:
    for name, value in state.env().items():
        typer.echo(f"export {name}={value}")


def _print_table(state: DevStackState) -> None:
    for name in ("temporal", "postgres", "redis"):
        svc = state.services.get(name)
        if svc is None:
            continue
        status = "running" if svc.running else "stopped"
        extra = f"  Web UI {svc.ui_url}" if svc.ui_url else ""
        typer.echo(f"# {_LABELS[name]:<10} {status:<8} pid {svc.process.pid:<7} {svc.url}{extra}")


@app.command()
def up(
    temporal_port: Annotated[
        int | None, typer.Option("--temporal-port", help="Temporal gRPC port [default: 7233]")
    ] = None,
    ui_port: Annotated[
        int | None, typer.Option("--ui-port", help="Temporal Web UI port [default: 8233]")
    ] = None,
    postgres_port: Annotated[
        int | None, typer.Option("--postgres-port", help="PostgreSQL port [default: 5434]")
    ] = None,
    redis_port: Annotated[
        int | None, typer.Option("--redis-port", help="Redis port [default: 6382]")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="seconds to wait for each server to answer")
    ] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the state as JSON")] = False,
) -> None:
    """Start the servers that are not running yet and wait until each answers.

    Running it twice starts nothing new. Data lives under AIOPS_HOME (default ./.aiops), so
    incidents and events survive `aiops dev down` and a later `up`.
    """
    stack = dev_stack_for(
        get_settings(),
        temporal_port=temporal_port,
        ui_port=ui_port,
        postgres_port=postgres_port,
        redis_port=redis_port,
    )
    if not as_json:
        typer.echo(f"# starting the dev stack under {stack.home} ...", err=True)
    result = asyncio.run(stack.up(timeout=timeout))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    for name in result.started:
        typer.echo(f"# started {_LABELS[name]}", err=True)
    for name in result.already_running:
        typer.echo(f"# {_LABELS[name]} was already running", err=True)
    _print_table(result.state)
    _print_exports(result.state)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print the state as JSON")] = False,
) -> None:
    """Print the endpoints as `export VAR=...` lines (eval-able), or JSON with --json.

    Exit code 0 when every server runs, 3 when the stack is not running or partly stopped.
    """
    stack = dev_stack_for(get_settings())
    state = stack.load()
    if state is None:
        if as_json:
            typer.echo(json.dumps({"home": str(stack.home), "running": False, "services": {}}))
        else:
            typer.echo(
                f"# the dev stack under {stack.home} is not running: `aiops dev up`", err=True
            )
        raise typer.Exit(3)
    all_running = all(svc.running for svc in state.services.values())
    if as_json:
        body = json.loads(state.model_dump_json())
        body["running"] = all_running
        body["env"] = state.env()
        typer.echo(json.dumps(body, indent=2))
    else:
        _print_table(state)
        _print_exports(state)
    if not all_running:
        raise typer.Exit(3)


@app.command()
def down(
    timeout: Annotated[
        float, typer.Option(help="seconds to wait for a clean stop before SIGKILL")
    ] = 30.0,
) -> None:
    """Stop exactly the server processes `up` started (recorded PIDs); data is kept."""
    stack = dev_stack_for(get_settings())
    stopped = stack.down(timeout=timeout)
    if stopped:
        typer.echo("stopped " + ", ".join(_LABELS[name] for name in stopped))
    else:
        typer.echo(f"nothing was running under {stack.home}")
