"""`aiops migrate`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from aiops.config import get_settings
from aiops.db.app_role import AppRoleError, ensure_app_role
from aiops.db.migrate import SCHEMA_DIR
from aiops.db.migrate import migrate as run_migrations
from aiops.endpoints import resolve_database_url


def migrate(
    schema_dir: Annotated[
        Path, typer.Option("--dir", help="directory of NNN_name.sql migrations")
    ] = SCHEMA_DIR,
) -> None:
    """Apply schema/NNN_*.sql in order, each in a transaction, recorded in schema_migrations.

    Running it twice changes nothing. The vector dimension comes from AIOPS_EMBEDDING_MODEL /
    AIOPS_EMBEDDING_DIM; a mismatch with an existing column is refused.

    With AIOPS_APP_DATABASE_URL set, the role it names (the one the worker, listener,
    monitor and API run as) is then created when missing, given the URL's password, and
    granted what the services need: only SELECT and INSERT on the audit log, no ownership.
    """
    settings = get_settings()
    url = resolve_database_url(settings)
    report = asyncio.run(run_migrations(url, settings.resolved_embedding_dim, schema_dir))
    for name in report.applied:
        typer.echo(f"applied {name}")
    total = len(report.applied) + len(report.already_applied)
    state = "migrated" if report.applied else "up to date"
    typer.echo(f"schema {state}: {total} migration(s), embeddings vector({report.embedding_dim})")
    if settings.app_database_url:
        try:
            role = asyncio.run(ensure_app_role(url, settings.app_database_url))
        except AppRoleError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from error
        how = "created" if role.created else "exists"
        typer.echo(
            f"app role {role.role}: {how}, password {role.password}, "
            "granted (audit log: SELECT and INSERT only)"
        )
