"""`aiops kg import | search | stats | verify | reembed | patterns | traverse`: the knowledge
graph from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import asyncpg
import typer

from aiops.audit import AuditEntry, AuditLog
from aiops.audit.records import cli_actor
from aiops.config import Settings, get_settings
from aiops.db.pool import create_pool
from aiops.embeddings import get_embedder
from aiops.endpoints import resolve_database_url
from aiops.errors import AiopsError
from aiops.knowledge import KnowledgeGraph, SearchHit
from aiops.knowledge.importer import ImportReport, import_lines
from aiops.knowledge.reembed import ReembedReport, reembed
from aiops.knowledge.stats import EmbeddingReport, GraphStats, graph_stats
from aiops.knowledge.traversal import NODES, Direction, TraversalNode

app = typer.Typer(
    help=(
        "The knowledge graph: import known problems and solutions, search it, mine patterns, "
        "walk its edges, check and recompute its embeddings."
    ),
    no_args_is_help=True,
)

_T = TypeVar("_T")


class KgCommandError(AiopsError):
    exit_code = 2


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(resolve_database_url(settings), max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


def _with_graph(work: Callable[[KnowledgeGraph], Awaitable[_T]]) -> _T:
    settings = get_settings()

    async def run() -> _T:
        async with _pool(settings) as pool:
            graph = KnowledgeGraph(pool, get_embedder(settings), settings.similarity_threshold)
            return await work(graph)

    return asyncio.run(run())


def _read(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    path = Path(source)
    if not path.is_file():
        raise KgCommandError(f"{source}: no such file (give a JSON-lines file, or - for stdin)")
    return path.read_text(encoding="utf-8").splitlines()


@app.command("import")
def import_(
    source: Annotated[
        str, typer.Argument(help="JSON-lines file, one problem per line; - reads stdin")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Import known problems and their solutions (JSON lines; idempotent on each line's key).

    One line: {"kind":"problem","key":"<your id>","description":...,"category":...,
    "error_patterns":[...],"severity":...,"context":{...},"solutions":[{"description":...,
    "actions":[{"action_type":...,"target":...,"parameters":{...},"order":1}]}]}.
    Bad lines are reported by number and skipped; the good ones are imported. Exit code 1
    when a line was bad.
    """
    lines = _read(source)

    async def work(kg: KnowledgeGraph) -> ImportReport:
        done = await import_lines(kg, lines)
        if done.created or done.updated:
            await AuditLog(kg.pool).append(
                AuditEntry(
                    actor=cli_actor(get_settings()),
                    action="kg import",
                    target=source,
                    decision="imported",
                    details={
                        "lines": done.lines,
                        "created": done.created,
                        "updated": done.updated,
                        "solutions": done.solutions,
                        "bad_lines": len(done.errors),
                    },
                )
            )
        return done

    report: ImportReport = _with_graph(work)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(
            f"imported {report.imported} of {report.lines} problem line(s): {report.created} "
            f"created, {report.updated} updated, {report.unchanged} unchanged; "
            f"{report.solutions} solution(s) linked"
        )
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)
        for error in report.errors:
            typer.echo(f"line {error.line}: {error.error}", err=True)
        if report.errors:
            typer.echo(f"{len(report.errors)} bad line(s) skipped", err=True)
    if report.errors:
        raise typer.Exit(1)


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _print_hits(hits: list[SearchHit]) -> None:
    if not hits:
        typer.echo("no matching problems")
        return
    for rank, hit in enumerate(hits, start=1):
        problem = hit.problem
        where = ", ".join(x for x in (problem.service, problem.category, problem.severity) if x)
        key = f"[{problem.key}] " if problem.key else ""
        typer.echo(f"{rank:>2}. {hit.similarity:.3f}  {key}{problem.description}")
        typer.echo(f"      {where or '-'} · seen {problem.occurrence_count}x · id {problem.id}")
        typer.echo(f"      why: {hit.why}")
        if not hit.solutions:
            typer.echo("      no known solution")
        for solution in hit.solutions:
            tried = solution.successes + solution.failures
            record = f"{_pct(solution.success_rate)} of {tried}" if tried else "never tried"
            actions = "; ".join(
                f"{a.action_type} {a.target}"
                + (f" {json.dumps(a.parameters, sort_keys=True)}" if a.parameters else "")
                for a in sorted(solution.actions, key=lambda a: a.order)
            )
            typer.echo(f"      - {solution.score:.3f}  {solution.description}  ({record})")
            if actions:
                typer.echo(f"          actions: {actions}")
            typer.echo(f"          why: {solution.why}")


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="what is wrong, in words or an error message")],
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=100, help="at most N problems")
    ] = 5,
    service: Annotated[str | None, typer.Option(help="only problems of this service")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Known problems most like TEXT, best first, each with its solutions ranked by relevance
    times learned success, and why.

    --json prints an array, best first, of {"problem": {"id","key","description",...},
    "similarity": float, "solutions": [{"id","description","success_rate","score",...}]}.
    """
    hits = _with_graph(lambda kg: kg.find_solutions(text, limit=limit, service=service))
    if as_json:
        typer.echo(json.dumps([hit.model_dump(mode="json") for hit in hits], indent=2))
    else:
        _print_hits(hits)


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Nodes per type, edges per relationship and embedding coverage."""
    settings = get_settings()

    async def run() -> GraphStats:
        async with _pool(settings) as pool:
            return await graph_stats(pool)

    result = asyncio.run(run())
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    typer.echo(f"nodes: {result.total_nodes}")
    for node_type, count in result.nodes.items():
        typer.echo(f"  {node_type:<14}{count:>10}")
    typer.echo(f"edges: {result.total_edges}")
    for relationship, count in result.edges.items():
        typer.echo(f"  {relationship:<14}{count:>10}")
    dim = f"vector({result.embedding_dim})" if result.embedding_dim else "no column"
    typer.echo(f"embeddings ({dim}):")
    for node_type, cover in result.embeddings.items():
        typer.echo(
            f"  {node_type:<14}{cover.embedded:>10} of {cover.nodes:<10} {_pct(cover.coverage)}"
        )


@app.command()
def verify(
    sample: Annotated[
        int, typer.Option(min=0, help="re-embed this many stored nodes and compare")
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Check the embeddings against the configured model: missing vectors, a column of
    another dimension, and a re-embedded sample that no longer matches. Exit 1 if not ok."""
    report: EmbeddingReport = _with_graph(lambda kg: kg.verify_embeddings(sample))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        column = f"vector({report.column_dim})" if report.column_dim else "missing"
        typer.echo(f"model {report.model} ({report.configured_dim} dims), column {column}")
        typer.echo(f"missing vectors: {report.missing}; wrong dimension: {report.wrong_dim}")
        if report.sampled:
            typer.echo(
                f"re-embedded sample: {report.sampled}, drifted: {report.drifted}, "
                f"lowest cosine {report.min_cosine}"
            )
        typer.echo("embeddings ok" if report.ok else f"embeddings NOT ok: {report.advice}")
    if not report.ok:
        raise typer.Exit(1)


async def _audit_reembed(settings: Settings, report: ReembedReport) -> None:
    async with _pool(settings) as pool:
        await AuditLog(pool).append(
            AuditEntry(
                actor=cli_actor(settings),
                action="kg reembed",
                target=report.model,
                decision="re-embedded",
                details=report.model_dump(mode="json", exclude={"seconds", "per_second"}),
            )
        )


@app.command("reembed")
def reembed_(
    missing_only: Annotated[
        bool, typer.Option("--missing-only", help="only nodes without a vector")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="nodes per batch")] = 256,
) -> None:
    """Recompute every embedding with the configured model (after changing it).

    When the model's dimension differs from the column's, the column is changed to
    vector(new) and its HNSW index rebuilt, in one transaction with the new vectors: a
    failure leaves the old ones in place. Search keeps working while vectors are computed.
    """
    settings = get_settings()
    embedder = get_embedder(settings, cache_size=0)
    started = time.monotonic()
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - shown[0] < 1.0:
            return
        shown[0] = now
        rate = done / (now - started) if now > started else 0.0
        typer.echo(f"embedded {done}/{total} nodes ({rate:.0f}/s)", err=True)

    report: ReembedReport = asyncio.run(
        reembed(
            resolve_database_url(settings),
            embedder,
            batch_size=batch_size,
            missing_only=missing_only,
            progress=progress,
        )
    )
    asyncio.run(_audit_reembed(settings, report))
    change = (
        f"column changed vector({report.old_dim}) -> vector({report.new_dim}), "
        f"rebuilt {', '.join(report.indexes_rebuilt) or 'no index'}; "
        if report.dim_changed
        else ""
    )
    typer.echo(
        f"re-embedded {report.embedded} node(s) with {report.model} in {report.seconds:.1f}s "
        f"({report.per_second:.0f}/s); {change}{report.caught_up} added during the run"
    )


@app.command()
def patterns(
    min_occurrences: Annotated[
        int, typer.Option("--min-occurrences", min=1, help="occurrences that make a pattern")
    ] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Mine patterns: recurring problems of one template on one service become pattern
    nodes, linked `triggers` to their problems and `leads_to` the solution most used on
    them. Running it again updates them; it never duplicates."""
    report = _with_graph(lambda kg: kg.extract_patterns(min_occurrences))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    typer.echo(
        f"{len(report.patterns)} pattern(s) ({report.created} new) from {report.groups} "
        f"service+template group(s), at least {report.min_occurrences} occurrences"
    )
    for pattern in report.patterns:
        fix = f" -> solution {pattern.solution_id}" if pattern.solution_id else ""
        typer.echo(
            f"  {pattern.occurrences:>6}x  {pattern.service or '-':<18} {pattern.template}"
            f"  (confidence {pattern.confidence:.2f}){fix}"
        )


@app.command()
def traverse(
    node_id: Annotated[str, typer.Argument(help="the start node's id")],
    max_hops: Annotated[int, typer.Option("--max-hops", min=1, max=10)] = 3,
    relationship: Annotated[
        list[str] | None,
        typer.Option("--relationship", "-r", help="follow only this relationship (repeatable)"),
    ] = None,
    direction: Annotated[
        str, typer.Option(help="out: along edges, in: against them, both")
    ] = "both",
    limit: Annotated[int, typer.Option(min=1, help="at most N nodes")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Nodes within --max-hops of NODE_ID, nearest first, each with a shortest path."""
    if direction not in ("out", "in", "both"):
        raise KgCommandError(f"--direction must be out, in or both, not {direction!r}")
    chosen: Direction = "out" if direction == "out" else "in" if direction == "in" else "both"
    nodes: list[TraversalNode] = _with_graph(
        lambda kg: kg.traverse(node_id, max_hops, relationship or None, chosen, limit, True)
    )
    if as_json:
        typer.echo(NODES.dump_json(nodes, indent=2).decode())
        return
    if not nodes:
        typer.echo("no connected nodes")
    for node in nodes:
        typer.echo(
            f"{node.hops}  {node.node_type:<9} {node.id}  {' '.join(node.steps)}  "
            f"{node.description[:80]}"
        )
