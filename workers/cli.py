"""The `aiops` command line: one entry point, sub-commands registered from workers/commands."""

from __future__ import annotations

import os
import sys

import typer

from aiops.errors import AiopsError

app = typer.Typer(
    name="aiops",
    help=(
        "aiops: a self-healing operations engine. Events come in on Redis Streams; each "
        "problem becomes a durable Temporal workflow that diagnoses it against a knowledge "
        "graph in PostgreSQL+pgvector, heals it with bounded actions and learns from the outcome."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from workers.commands import (
        api_cmd,
        audit,
        codec_server,
        config_cmd,
        demo,
        dev,
        events,
        fingerprint,
        incidents,
        kg,
        limits,
        migrate,
        mode,
        monitor,
        note,
        patterns,
        producers,
        services,
        silence,
        token,
        tools,
        worker_cmd,
    )

    app.add_typer(dev.app, name="dev")
    app.command("publish")(events.publish)
    app.command("listen")(events.listen)
    app.add_typer(events.app, name="events")
    app.add_typer(audit.app, name="audit")
    app.command("incidents")(incidents.incidents)
    app.command("approve")(incidents.approve)
    app.command("retry")(incidents.retry)
    app.command("replay")(incidents.replay)
    app.command("worker")(worker_cmd.worker)
    app.command("fingerprint")(fingerprint.fingerprint)
    app.command("migrate")(migrate.migrate)
    app.add_typer(kg.app, name="kg")
    app.add_typer(services.app, name="services")
    app.add_typer(services.agents_app, name="agents")
    app.command("monitor")(monitor.monitor)
    app.add_typer(limits.app, name="limits")
    app.command("config")(config_cmd.config)
    app.command("demo")(demo.demo)
    app.add_typer(patterns.app, name="patterns")
    app.command("api")(api_cmd.api)
    app.add_typer(token.app, name="token")
    app.add_typer(producers.app, name="producers")
    app.add_typer(mode.app, name="mode")
    app.add_typer(mode.shadow_app, name="shadow")
    app.add_typer(silence.app, name="silence")
    app.add_typer(note.app, name="note")
    app.command("codec-server")(codec_server.codec_server)
    app.add_typer(tools.app, name="tools")


def _run() -> int:
    _register()
    try:
        app()
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except AiopsError as error:
        typer.echo(f"aiops: error: {error}", err=True)
        return error.exit_code
    except KeyboardInterrupt:
        typer.echo("aiops: interrupted", err=True)
        return 130
    return 0


def main() -> None:
    code = _run()
    # The Temporal SDK's Rust threads can abort CPython's finalization ("PyGILState_Release:
    # thread state must be current", temporalio/sdk-python#300), turning a success into
    # SIGABRT. Nothing is left to clean up here, so flush and leave without finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
