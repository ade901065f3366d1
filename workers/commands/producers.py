"""`aiops producers add | list | set | remove`: who may publish events for which services.

Each producer gets a Redis ACL user `producer-<name>` that may XADD to `events:<name>` and
nothing else, and a row in the producers table naming the services it may speak for. The
listener dead-letters an event on that stream about any other service (aiops/events/trust.py).
The user's password is printed once by `add` and kept nowhere by aiops. Every change is
written to the audit log.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import redis.asyncio as aioredis
import typer
from pydantic import ValidationError

from aiops.audit import AuditEntry, AuditLog
from aiops.config import Settings, get_settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url, resolve_redis_url
from aiops.events.trust import RELOAD_S, internal_streams, is_internal_stream
from aiops.producers import (
    Producer,
    ProducerAccounts,
    ProducerError,
    ProducerStore,
    parse_services,
)
from workers.commands.services import registry_actor

app = typer.Typer(
    help="Event producers: a Redis user per producer, and the services it may speak for.",
    no_args_is_help=True,
)

T = TypeVar("T")

ServicesOption = Annotated[
    str,
    typer.Option(
        "--services",
        help="comma-separated services the producer may speak for (its events' service, "
        "or their source when they name none)",
    ),
]


def _actor() -> str:
    # the same rule as the service registry: an admin's AIOPS_TOKEN, or in open mode the
    # OS user with a warning
    return registry_actor(get_settings())


def _producer(name: str, services: str, settings: Settings) -> Producer:
    try:
        producer = Producer(name=name, services=parse_services(services))
    except ValidationError as error:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        raise ProducerError(reasons) from None
    if is_internal_stream(producer.stream, internal_streams(settings)):
        raise ProducerError(
            f"producer name {name!r} is reserved: {producer.stream} is one of aiops' own streams"
        )
    return producer


def _with_backends(
    work: Callable[[asyncpg.Pool, ProducerAccounts], Awaitable[T]],
) -> T:
    settings = get_settings()

    async def run() -> T:
        url = resolve_redis_url(settings)
        pool = await create_pool(resolve_database_url(settings), max_size=2)
        client = aioredis.Redis.from_url(url, socket_connect_timeout=5)
        try:
            return await work(pool, ProducerAccounts(client, url))
        finally:
            await client.aclose()
            await pool.close()

    return asyncio.run(run())


async def _audit(pool: asyncpg.Pool, name: str, decision: str, **details: object) -> None:
    await AuditLog(pool).append(
        AuditEntry(
            actor=_actor(), action="producers", target=name, decision=decision, details=details
        )
    )


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="lower-case letters, digits, _ and -")],
    services: ServicesOption,
) -> None:
    """Add a producer: its Redis user (printed once, with its password) and its services."""
    settings = get_settings()
    producer = _producer(name, services, settings)

    async def go(pool: asyncpg.Pool, accounts: ProducerAccounts) -> tuple[Producer, str, bool]:
        store = ProducerStore(pool)
        added = await store.add(producer)
        try:
            url = await accounts.create(added)
            saved = await accounts.aclfile() is not None
        except BaseException:
            # no producer row without its Redis user
            await store.remove(added.name)
            raise
        await _audit(pool, added.name, "added", services=added.services, stream=added.stream)
        return added, url, saved

    added, url, saved = _with_backends(go)
    example = json.dumps(
        {
            "event_type": "ServiceError",
            "source": added.name,
            "service": added.services[0],
            "payload": {"message": "something failed"},
        }
    )
    typer.echo(f"producer {added.name}: stream {added.stream}, services {','.join(added.services)}")
    typer.echo(f"REDIS_URL={url}")
    typer.echo(
        "  the password is shown this once and kept nowhere by aiops "
        f"(remove and add {added.name} again for a new one)"
    )
    typer.echo(
        f"publish: redis-cli -u {shlex.quote(url)} XADD {added.stream} '*' event "
        f"{shlex.quote(example)}"
    )
    notes = [f"running listeners know it within {RELOAD_S:g} s"]
    if not saved:
        notes.append("Redis has no aclfile: the user lasts until Redis restarts")
    if settings.event_trust_mode == "open":
        notes.append("AIOPS_EVENT_TRUST is open: streams without a producer are accepted too")
    typer.echo("note: " + "; ".join(notes))


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="print the producers as JSON")] = False,
) -> None:
    """The producers, their streams and services, and whether each has its Redis user."""

    async def go(pool: asyncpg.Pool, accounts: ProducerAccounts) -> list[tuple[Producer, bool]]:
        producers = await ProducerStore(pool).list()
        return [(p, await accounts.exists(p.name)) for p in producers]

    rows = _with_backends(go)
    if as_json:
        typer.echo(
            json.dumps(
                [{**p.model_dump(mode="json"), "redis_user": user} for p, user in rows], indent=2
            )
        )
        return
    if not rows:
        typer.echo("no producers: `aiops producers add NAME --services a,b` adds one")
        return
    for p, user in rows:
        missing = "" if user else f"  (no Redis user {p.acl_user}: remove and add it again)"
        typer.echo(f"{p.name:<20} {p.stream:<28} {','.join(p.services)}{missing}")


@app.command("set")
def set_(name: Annotated[str, typer.Argument()], services: ServicesOption) -> None:
    """Change the services a producer may speak for (its Redis user stays as it is)."""
    settings = get_settings()
    wanted = _producer(name, services, settings)

    async def go(pool: asyncpg.Pool, _: ProducerAccounts) -> tuple[Producer, Producer]:
        store = ProducerStore(pool)
        before = await store.get(name)
        if before is None:
            raise ProducerError(f"no producer {name}: `aiops producers add {name}` adds it")
        after = await store.set_services(name, wanted.services)
        await _audit(pool, name, "changed", services=after.services, before=before.services)
        return before, after

    before, after = _with_backends(go)
    typer.echo(
        f"producer {name}: services {','.join(before.services)} -> {','.join(after.services)}"
    )


@app.command()
def remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a producer: its Redis user first (its connections close), then its row."""

    async def go(pool: asyncpg.Pool, accounts: ProducerAccounts) -> tuple[Producer | None, bool]:
        store = ProducerStore(pool)
        producer = await store.get(name)
        user = await accounts.delete(name)
        if producer is None and not user:
            raise ProducerError(f"no producer {name}: `aiops producers list` shows them")
        if producer is not None:
            await store.remove(name)
        await _audit(
            pool,
            name,
            "removed",
            services=producer.services if producer is not None else [],
            redis_user=user,
        )
        return producer, user

    producer, user = _with_backends(go)
    parts = []
    if user:
        parts.append(f"Redis user producer-{name} deleted")
    if producer is not None:
        parts.append(f"{producer.stream} now belongs to no producer")
    typer.echo(f"producer {name} removed: " + "; ".join(parts))
