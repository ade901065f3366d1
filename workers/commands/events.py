"""`aiops publish`, `aiops listen` and `aiops events replay | query | tree | dead | health`."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import redis.asyncio as aioredis
import typer

from aiops.auth.tokens import parse_ttl
from aiops.config import get_settings
from aiops.endpoints import resolve_database_url, resolve_redis_url
from aiops.errors import AiopsError
from aiops.events.consumer import as_text
from aiops.events.envelope import Event
from aiops.events.health import mesh_health_from_settings
from aiops.events.mesh import EventMesh, PublishError
from aiops.events.replay import REPLAY_STREAM
from aiops.events.replay import replay as run_replay
from aiops.events.store import CausationNode, EventQuery, EventStore

# `aiops listen` is the listener's own command (python -m workers.listener is the same)
from workers.listener import listen as listen

app = typer.Typer(
    help=(
        "The event store and streams: replay stored events, query them, show a causation "
        "tree, list dead letters, print health figures."
    ),
    no_args_is_help=True,
)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class EventsCommandError(AiopsError):
    exit_code = 2


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when no offset) or a span back from now: 90s, 15m, 2h, 7d, 1w."""
    match = _RELATIVE.match(value.strip())
    if match:
        amount, unit = float(match[1]), _UNITS[match[2]]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise EventsCommandError(
            f"{value!r} is not a time: give ISO 8601 (2026-01-31T12:00:00Z) or a span "
            "back from now (90s, 15m, 2h, 7d, 1w)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise EventsCommandError(f"--payload is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise EventsCommandError("--payload must be a JSON object, e.g. '{\"duration_s\": 30}'")
    return value


def publish(
    event_type: Annotated[
        str, typer.Argument(help="ServiceTimeout, ServiceError, ... or any custom name")
    ],
    source: Annotated[str, typer.Option("--source", "-s", help="who emits the event")],
    payload: Annotated[str, typer.Option(help="JSON object")] = "{}",
    correlation_id: Annotated[
        uuid.UUID | None, typer.Option(help="id shared by the events of one flow")
    ] = None,
    causation_id: Annotated[
        uuid.UUID | None, typer.Option(help="id of the event that caused this one")
    ] = None,
    service: Annotated[str | None, typer.Option(help="the service concerned")] = None,
    severity: Annotated[
        str | None, typer.Option(help="debug, info, warning, error or critical")
    ] = None,
    stream: Annotated[
        str | None, typer.Option(help="stream to publish to [default: events:<source>]")
    ] = None,
) -> None:
    """Publish one event to Redis Streams and print its id."""
    settings = get_settings()
    try:
        event = Event(
            event_type=event_type,
            source=source,
            payload=_payload(payload),
            correlation_id=correlation_id,
            causation_id=causation_id,
            service=service,
            severity=severity,
        )
    except ValueError as error:
        raise EventsCommandError(f"invalid event: {error}".replace("\n", " ")) from None

    async def go() -> None:
        mesh = EventMesh.from_settings(settings)
        try:
            await mesh.publish(event, stream=stream)
        finally:
            await mesh.aclose()

    try:
        asyncio.run(go())
    except PublishError as error:
        raise EventsCommandError(str(error)) from None
    typer.echo(str(event.id))


@app.command()
def replay(
    since: Annotated[str, typer.Option(help="ISO time or span back from now (2h, 7d)")],
    until: Annotated[str | None, typer.Option(help="ISO time or span back from now")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="only this type (repeatable)")
    ] = None,
    source: Annotated[list[str] | None, typer.Option(help="only this source (repeatable)")] = None,
    to_stream: Annotated[str, typer.Option(help="stream to publish to")] = REPLAY_STREAM,
) -> None:
    """Publish stored events again, marked as replays, oldest first.

    The listener does not store them twice; their problems go to incident-replay-<fp>
    workflows, apart from live incidents, so detection changes can be tried on history.
    """
    settings = get_settings()
    start = parse_time(since)
    end = parse_time(until) if until else None

    async def go() -> None:
        store = await EventStore.connect(resolve_database_url(settings), max_size=2)
        mesh = EventMesh.from_settings(settings)
        try:
            report = await run_replay(
                store,
                mesh,
                since=start,
                until=end,
                event_types=event_type,
                sources=source,
                to_stream=to_stream,
            )
        finally:
            await mesh.aclose()
            await store.close()
        span = f" ({report.first} .. {report.last})" if report.first else ""
        typer.echo(f"replayed {report.published} event(s) to {report.stream}{span}")

    try:
        asyncio.run(go())
    except PublishError as error:
        raise EventsCommandError(str(error)) from None


@app.command()
def query(
    since: Annotated[str | None, typer.Option(help="ISO time or span back from now")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time or span back from now")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="only this type (repeatable)")
    ] = None,
    source: Annotated[list[str] | None, typer.Option(help="only this source (repeatable)")] = None,
    correlation_id: Annotated[uuid.UUID | None, typer.Option(help="one flow's events")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
) -> None:
    """Print stored events as JSON lines, oldest first."""
    settings = get_settings()
    q = EventQuery(
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        event_types=event_type or [],
        sources=source or [],
        correlation_id=correlation_id,
        limit=limit,
    )

    async def go() -> None:
        store = await EventStore.connect(resolve_database_url(settings), max_size=1)
        try:
            for stored in await store.query(q):
                typer.echo(stored.model_dump_json())
        finally:
            await store.close()

    asyncio.run(go())


def _print_tree(node: CausationNode, depth: int = 0) -> None:
    e = node.event.event
    typer.echo(f"{'  ' * depth}{e.id} {e.timestamp.isoformat()} {e.event_type} from {e.source}")
    for child in node.children:
        _print_tree(child, depth + 1)


@app.command()
def tree(
    event_id: Annotated[uuid.UUID, typer.Argument(help="any event of the tree")],
    as_json: Annotated[bool, typer.Option("--json", help="print the tree as JSON")] = False,
) -> None:
    """Print the causation tree an event belongs to, from its root cause down."""
    settings = get_settings()

    async def go() -> CausationNode | None:
        store = await EventStore.connect(resolve_database_url(settings), max_size=1)
        try:
            return await store.causation_tree(event_id)
        finally:
            await store.close()

    node = asyncio.run(go())
    if node is None:
        raise EventsCommandError(f"no stored event with id {event_id}")
    if as_json:
        typer.echo(node.model_dump_json(indent=2))
    else:
        _print_tree(node)


@app.command()
def dead(
    count: Annotated[int, typer.Option(min=1, help="newest this many")] = 20,
) -> None:
    """Print the newest dead letters: reason, where from, and the original event field."""
    settings = get_settings()

    async def go() -> list[Any]:
        client = aioredis.Redis.from_url(resolve_redis_url(settings))
        try:
            return list(await client.xrevrange(settings.dead_letter_stream, count=count) or [])
        finally:
            await client.aclose()

    for entry_id, fields in asyncio.run(go()):
        shown = {as_text(k): as_text(v)[:500] for k, v in (fields or {}).items()}
        typer.echo(json.dumps({"id": as_text(entry_id), **shown}))


@app.command()
def prune(
    older_than: Annotated[
        str | None,
        typer.Option(help="e.g. 30d, 12h; default: AIOPS_EVENTS_RETENTION_DAYS"),
    ] = None,
) -> None:
    """Delete stored events older than the retention (the raw payloads live only here;
    the listener also prunes every hour)."""
    settings = get_settings()
    if older_than is not None:
        window = parse_ttl(older_than)
    elif settings.events_retention_days > 0:
        window = timedelta(days=settings.events_retention_days)
    else:
        raise EventsCommandError("AIOPS_EVENTS_RETENTION_DAYS=0 keeps events: give --older-than")

    async def go() -> int:
        store = await EventStore.connect(resolve_database_url(settings))
        try:
            return await store.prune(window)
        finally:
            await store.close()

    typer.echo(f"pruned {asyncio.run(go())} event(s) older than {window}")


@app.command()
def health(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Pending entries, consumer lag, dead letters, events stored in the last hour, and
    stale events (a backlog older than AIOPS_EVENTS_STALE_AFTER_S: stored, not acted on)."""
    settings = get_settings()

    async def go() -> str:
        client = aioredis.Redis.from_url(resolve_redis_url(settings))
        store = await EventStore.connect(resolve_database_url(settings), max_size=1)
        try:
            result = await mesh_health_from_settings(settings, client, store)
        finally:
            await client.aclose()
            await store.close()
        if as_json:
            return result.model_dump_json(indent=2)
        lines = [
            f"status {result.status}: pending {result.pending}, lag {result.lag} "
            f"({result.lag_seconds:.1f}s), dead letters {result.dead_letters}, "
            f"stored in the last hour {result.processed_1h}, stale (stored, not acted on) "
            f"{result.stale_total}"
        ]
        for s in result.streams:
            lines.append(
                f"  {s.stream}: length {s.length}, pending {s.pending}, lag {s.lag}"
                f"{'+' if s.lag_is_lower_bound else ''}, consumers {s.consumers}"
            )
        lines += [f"  error: {e}" for e in result.errors]
        return "\n".join(lines)

    typer.echo(asyncio.run(go()))
