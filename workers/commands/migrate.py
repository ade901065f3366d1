"""`aiops migrate`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from aiops.config import get_settings
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
    """
    settings = get_settings()
    url = resolve_database_url(settings)
    report = asyncio.run(run_migrations(url, settings.resolved_embedding_dim, schema_dir))
    for name in report.applied:
        typer.echo(f"applied {name}")
    total = len(report.applied) + len(report.already_applied)
    state = "migrated" if report.applied else "up to date"
    typer.echo(f"schema {state}: {total} migration(s), embeddings vector({report.embedding_dim})")
