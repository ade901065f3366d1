"""The `aiops` command line: one entry point, sub-commands registered from workers/commands."""

from __future__ import annotations

import sys

import typer

from aiops.config import ConfigError

app = typer.Typer(
    name="aiops",
    help="aiops: a self-healing operations engine on Temporal, PostgreSQL+pgvector and Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from workers.commands import config_cmd, dev, migrate

    app.add_typer(dev.app, name="dev")
    app.command("migrate")(migrate.migrate)
    app.command("config")(config_cmd.config)


def main() -> None:
    _register()
    try:
        app()
    except ConfigError as error:
        typer.echo(f"aiops: configuration error: {error}", err=True)
        sys.exit(2)
