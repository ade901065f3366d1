"""`aiops patterns load | list | retire | evolve`: the pattern library from the shell."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from aiops.audit import AuditEntry, AuditLog
from aiops.audit.records import cli_actor
from aiops.config import load_settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url
from aiops.events.mesh import EventMesh
from aiops.patterns.errors import PatternFileError
from aiops.patterns.files import DEFAULT_PATTERNS, read_patterns
from aiops.patterns.learning import PatternEvolver
from aiops.patterns.models import MatchingRule, PatternStatus
from aiops.patterns.proposals import EvolutionResult
from aiops.patterns.store import AddResult, PatternLibrary, StoredPattern

app = typer.Typer(
    help="The pattern library: rules that decide which events are problems, and evolve.",
    no_args_is_help=True,
)

T = TypeVar("T")


def _with_library(
    work: Callable[[PatternLibrary], Awaitable[T]],
    audit: Callable[[T], AuditEntry | None] | None = None,
) -> T:
    """Run `work`; with `audit`, append the row it makes of the result (None: no change)."""

    async def run() -> T:
        pool = await create_pool(resolve_database_url(load_settings()), max_size=2)
        try:
            result = await work(PatternLibrary(pool))
            entry = audit(result) if audit is not None else None
            if entry is not None:
                await AuditLog(pool).append(entry)
            return result
        finally:
            await pool.close()

    return asyncio.run(run())


def _rule(rule: MatchingRule) -> str:
    return f"{rule.field} {rule.operator.value} {json.dumps(rule.value)}"


@app.command()
def load(
    file: Annotated[
        Path | None, typer.Argument(help="YAML or JSON: a list of patterns or {patterns: [...]}")
    ] = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="load the patterns aiops ships")
    ] = False,
) -> None:
    """Add the file's patterns (all or none). Loading again adds nothing; a pattern that
    was retired (by evolution or by hand) stays retired."""
    if (file is None) == (not defaults):
        raise PatternFileError("give a patterns FILE or --defaults (one of them)")
    path = DEFAULT_PATTERNS if defaults else file
    assert path is not None
    patterns = read_patterns(path)

    def audit(results: list[AddResult]) -> AuditEntry | None:
        added = [r.id for r in results if r.created]
        if not added:
            return None
        return AuditEntry(
            actor=cli_actor(load_settings()),
            action="patterns load",
            target=str(path),
            decision="added",
            details={"added": added, "already": len(results) - len(added)},
        )

    results: list[AddResult] = _with_library(lambda lib: lib.add_many(patterns), audit)
    for pattern, result in zip(patterns, results, strict=True):
        state = "added" if result.created else f"already there ({result.status.value})"
        typer.echo(f"{result.id}  {state:<28} {pattern.description}")
    added = sum(r.created for r in results)
    typer.echo(f"{added} added, {len(results) - added} already in the library ({path})")


@app.command("list")
def list_(
    include_retired: Annotated[
        bool, typer.Option("--all", help="retired patterns too, not only active ones")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Patterns with their rules, actions and track record, oldest first."""
    status = None if include_retired else PatternStatus.ACTIVE
    stored: list[StoredPattern] = _with_library(lambda lib: lib.list(status))
    for item in stored:
        p = item.pattern
        if as_json:
            typer.echo(json.dumps({"id": item.id, **p.model_dump(mode="json")}))
            continue
        rate = f"{p.success_count}/{p.attempt_count} ok" if p.attempt_count else "no outcomes"
        actions = ", ".join(f"{a.action_type} {a.target}" for a in p.actions) or "-"
        where = ",".join(p.event_types) or "any event"
        typer.echo(
            f"{item.id}  {p.status.value:<7} {p.severity or '-':<8} {rate:<14} "
            f"matched {p.occurrences:<6} {p.description}"
        )
        typer.echo(f"    when {where}: {' and '.join(map(_rule, p.matching_rules)) or '-'}")
        typer.echo(f"    do {actions}")
    if not stored and not as_json:
        typer.echo("no patterns" + ("" if include_retired else " active (--all shows retired)"))


@app.command()
def retire(
    pattern_id: Annotated[str, typer.Argument(help="the pattern's id")],
    reason: Annotated[str, typer.Option(help="kept with the pattern")] = "retired by hand",
) -> None:
    """Retire a pattern: it stops matching (listeners reload within AIOPS_PATTERN_RELOAD_S)."""

    def audit(retired: bool) -> AuditEntry | None:
        if not retired:
            return None
        return AuditEntry(
            actor=cli_actor(load_settings()),
            action="patterns retire",
            target=pattern_id,
            decision="retired",
            details={"reason": reason},
        )

    done: bool = _with_library(lambda lib: lib.retire(pattern_id, reason), audit)
    typer.echo(f"{pattern_id} retired" if done else f"{pattern_id} was retired already")


@app.command()
def evolve(
    pattern_id: Annotated[
        str | None, typer.Argument(help="one pattern; default every pattern that is due")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the proposals, change nothing")
    ] = False,
) -> None:
    """Evolve patterns whose success rate is under 0.7 over at least
    AIOPS_PATTERN_EVOLVE_MIN_OUTCOMES outcomes, and publish PatternEvolved events."""
    settings = load_settings()

    async def run() -> list[dict[str, Any]]:
        pool = await create_pool(resolve_database_url(settings), max_size=2)
        mesh = None if dry_run else EventMesh.from_settings(settings)
        try:
            evolver = PatternEvolver(
                pool, mesh=mesh, min_outcomes=settings.pattern_evolve_min_outcomes
            )
            ids = [pattern_id] if pattern_id else await evolver.due()
            shown: list[dict[str, Any]] = []
            for pid in ids:
                if dry_run:
                    proposal = await evolver.propose(pid)
                    if proposal is not None:
                        shown.append(proposal.model_dump(mode="json"))
                    continue
                result: EvolutionResult | None = await evolver.evolve(pid)
                if result is not None:
                    shown.append(result.model_dump(mode="json"))
                    await AuditLog(pool).append(
                        AuditEntry(
                            actor=cli_actor(settings),
                            action="patterns evolve",
                            target=result.old_id,
                            decision="evolved",
                            details={"new_ids": result.new_ids, "event_id": result.event_id},
                        )
                    )
            return shown
        finally:
            if mesh is not None:
                await mesh.aclose()
            await pool.close()

    shown = asyncio.run(run())
    for item in shown:
        typer.echo(json.dumps(item))
    if not shown:
        typer.echo("nothing to evolve", err=True)
