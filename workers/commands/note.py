"""`aiops note add | list`: what a person found or did about an incident."""

from __future__ import annotations

import json
from typing import Annotated

import asyncpg
import typer

from aiops.auth.roles import Role
from aiops.config import get_settings
from aiops.notes import IncidentNote, NoteStore
from workers.commands.pooled import with_pool
from workers.commands.services import registry_actor

app = typer.Typer(
    help=(
        "An operator's notes on incidents (masked, audited). A note with --resolved says a "
        "person fixed it; `aiops shadow report` counts it as how a shadowed incident ended."
    ),
    no_args_is_help=True,
)


def _line(note: IncidentNote) -> str:
    mark = " [resolved]" if note.resolved else ""
    return f"{note.created_at:%Y-%m-%d %H:%M:%S} {note.author}{mark}: {note.note}"


@app.command()
def add(
    workflow_id: Annotated[str, typer.Argument(help="the incident, e.g. incident-<fingerprint>")],
    text: Annotated[str, typer.Argument(help="what you found or did")],
    resolved: Annotated[
        bool, typer.Option("--resolved", help="you fixed it: the incident ended by hand")
    ] = False,
) -> None:
    """Add a note to an incident (operator role with AIOPS_TOKEN in signed mode)."""
    author = registry_actor(get_settings(), Role.OPERATOR, "note")

    async def work(pool: asyncpg.Pool) -> IncidentNote:
        return await NoteStore(pool).add(workflow_id, author, text, resolved)

    typer.echo(_line(with_pool(work)))


@app.command("list")
def list_notes(
    workflow_id: Annotated[str, typer.Argument(help="the incident")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The notes on one incident, oldest first."""

    async def work(pool: asyncpg.Pool) -> list[IncidentNote]:
        return await NoteStore(pool).for_incident(workflow_id)

    notes = with_pool(work)
    if as_json:
        typer.echo(json.dumps([n.model_dump(mode="json") for n in notes], indent=2))
        return
    if not notes:
        typer.echo(f"no notes on {workflow_id}")
    for note in notes:
        typer.echo(_line(note))
