"""Producers against real Redis (ACL users) and PostgreSQL: a producer may XADD to its own
stream only, and the listener dead-letters what its stream may not say (another service, a
reserved source, a forged replay, a stream nobody owns) before storing or routing it.

Each test here is an attack that today's listener lets through."""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import redis.exceptions
from test_events_helpers import drain, entries_of, fingerprinter_for_tests, mesh_settings, wait_for
from typer.testing import CliRunner, Result

from aiops.config import Settings, get_settings
from aiops.db.pool import create_pool
from aiops.events.detection import DefaultDetector
from aiops.events.envelope import MONITOR_SOURCE, Event
from aiops.events.ingest import Ingestor
from aiops.events.replay import REPLAY_STREAM
from aiops.events.routing import IncidentRouter
from aiops.events.store import EventStore
from aiops.events.trust import EventTrust
from aiops.models.incident import Observation
from aiops.producers import Producer, ProducerAccounts, ProducerError, ProducerStore
from workers import cli, listener

cli._register()

Mode = Literal["open", "producers"]


@dataclass
class RecordingRouter(IncidentRouter):
    """Detects and coalesces like the real router; records what it would signal instead
    of signalling Temporal (no worker runs here: where observations go is the point)."""

    signalled: list[Observation] = field(default_factory=list)

    async def signal_all(self, observations: Sequence[Observation], *, hold: bool = True) -> None:
        self.signalled.extend(observations)


def recording_router() -> RecordingRouter:
    return RecordingRouter(
        client=None,  # type: ignore[arg-type]
        task_queue="nobody",
        detector=DefaultDetector(),
        fingerprinter=fingerprinter_for_tests(),
    )


@dataclass
class World:
    """Unique names for one test: producers billing-<id> and stranger-<id>, a monitor
    stream, the services billing and payments."""

    tag: str
    billing: str = ""
    stranger: str = ""
    payments: str = ""
    monitor_stream: str = ""

    def __post_init__(self) -> None:
        self.billing = f"billing-{self.tag}"
        self.stranger = f"stranger-{self.tag}"
        self.payments = f"payments-{self.tag}"
        self.monitor_stream = f"events:aiops-monitor-{self.tag}"

    @property
    def billing_stream(self) -> str:
        return f"events:{self.billing}"

    @property
    def stranger_stream(self) -> str:
        return f"events:{self.stranger}"

    def streams(self) -> list[str]:
        return [self.billing_stream, self.stranger_stream, self.monitor_stream]


@pytest.fixture
def world() -> World:
    return World(uuid.uuid4().hex[:10])


@pytest_asyncio.fixture
async def redis_client(redis_url: str, world: World) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    for name in (world.billing, world.stranger):
        await client.acl_deluser(f"producer-{name}")
    await client.delete(*world.streams())
    await client.aclose()


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=3)
    yield pool
    await pool.close()


def settings_for(
    redis_url: str, database_url: str, stream_prefix: str, world: World, mode: Mode
) -> Settings:
    return mesh_settings(
        redis_url,
        database_url,
        stream_prefix,
        listener_streams=",".join(world.streams()),
        monitor_stream=world.monitor_stream,
        event_trust=mode,
    )


async def stored(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch("SELECT id, stream, source, service FROM events")
    finally:
        await conn.close()


async def dead_letters(client: aioredis.Redis, settings: Settings) -> list[dict[str, Any]]:
    out = []
    for _, fields in await entries_of(client, settings.dead_letter_stream):
        text = {k.decode(): v.decode() for k, v in fields.items()}
        out.append({**text, "event": json.loads(text["event"])})
    return out


async def ingest(
    settings: Settings,
    client: aioredis.Redis,
    database_url: str,
    pool: asyncpg.Pool,
    publish: Sequence[tuple[str, Event]],
) -> tuple[Ingestor, RecordingRouter]:
    """Publish raw XADDs (as any producer would), then run the listener's pipeline."""
    for stream, event in publish:
        await client.xadd(stream, {"event": event.to_wire()})
    store = await EventStore.connect(database_url)
    trust = await EventTrust.start(settings, pool)
    router = recording_router()
    ingestor = listener.make_ingestor(
        settings, client, store, consumer="trust-test", incidents=router, trust=trust
    )
    try:
        await drain(ingestor)
    finally:
        await trust.aclose()
        await store.close()
    return ingestor, router


def problem(source: str, service: str | None, message: str) -> Event:
    return Event(
        event_type="ServiceError",
        source=source,
        service=service,
        payload={"message": message},
    )


# --- the Redis user -------------------------------------------------------------------


async def test_a_producer_user_may_xadd_only_to_its_own_stream(
    redis_url: str, redis_client: aioredis.Redis, world: World
) -> None:
    accounts = ProducerAccounts(redis_client, redis_url)
    producer = Producer(name=world.billing, services=[world.billing])
    url = await accounts.create(producer)
    assert url.startswith(f"redis://producer-{world.billing}:")
    # the test Redis is the dev stack's: it has an aclfile, so the user was saved there
    aclfile = await accounts.aclfile()
    assert aclfile is not None
    assert f"user producer-{world.billing} on" in await asyncio.to_thread(Path(aclfile).read_text)

    as_billing = aioredis.Redis.from_url(url)
    try:
        assert await as_billing.ping()
        await as_billing.xadd(world.billing_stream, {"event": b"{}"})
        for stream in ("events:monitor", world.monitor_stream, world.stranger_stream):
            with pytest.raises(redis.exceptions.NoPermissionError):
                await as_billing.xadd(stream, {"event": b"{}"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            await as_billing.xread({world.billing_stream: "0"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            await as_billing.delete(world.billing_stream)
        with pytest.raises(redis.exceptions.NoPermissionError):
            await as_billing.xtrim(world.billing_stream, maxlen=0)
        with pytest.raises(redis.exceptions.NoPermissionError):
            await as_billing.publish("anything", "hello")
        assert await redis_client.xlen(world.billing_stream) == 1

        assert await accounts.delete(world.billing)
        assert not await accounts.exists(world.billing)
    finally:
        await as_billing.aclose()
    # gone: its password opens nothing any more
    again = aioredis.Redis.from_url(url)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await again.ping()
    finally:
        await again.aclose()


# --- the listener's check -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["producers", "open"])
async def test_a_producer_cannot_speak_for_another_service(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    db: asyncpg.Pool,
    world: World,
    mode: Mode,
) -> None:
    settings = settings_for(redis_url, database_url, stream_prefix, world, mode)
    await ProducerStore(db).add(Producer(name=world.billing, services=[world.billing]))
    own = problem(world.billing, world.billing, "billing run failed: ledger locked")
    forged = problem(world.billing, world.payments, "payments is wedged: restart it")
    # no service: the adapters would act on the source, so the source is checked too
    via_source = problem(world.payments, None, "payments is wedged: restart it now")

    ingestor, router = await ingest(
        settings,
        redis_client,
        database_url,
        db,
        [(world.billing_stream, e) for e in (own, forged, via_source)],
    )

    rows = await stored(database_url)
    assert [(r["id"], r["service"]) for r in rows] == [(own.id, world.billing)]
    assert [o.service for o in router.signalled] == [world.billing]
    assert all(o.sample.id == own.id for o in router.signalled)

    dead = await dead_letters(redis_client, settings)
    assert [d["event"]["id"] for d in dead] == [str(forged.id), str(via_source.id)]
    assert dead[0]["dead:stream"] == world.billing_stream
    assert dead[0]["dead:reason"] == (
        f"producer {world.billing} may not speak for service {world.payments}: "
        f"aiops producers set {world.billing} --services {world.billing},{world.payments}"
    )
    assert (
        "the event names no service, so its source is the service acted on"
        in (dead[1]["dead:reason"])
    )
    # the original bytes are kept: nothing is lost
    assert dead[0]["event"]["payload"] == {"message": "payments is wedged: restart it"}
    assert ingestor.stats.untrusted == 2 and ingestor.stats.stored == 1
    assert await redis_client.xpending(world.billing_stream, "aiops") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


@pytest.mark.parametrize("mode", ["producers", "open"])
async def test_reserved_sources_and_forged_replays_need_an_internal_stream(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    db: asyncpg.Pool,
    world: World,
    mode: Mode,
) -> None:
    settings = settings_for(redis_url, database_url, stream_prefix, world, mode)
    await ProducerStore(db).add(Producer(name=world.billing, services=[world.billing]))
    as_monitor = Event(
        event_type="ServiceUnhealthy",
        source=MONITOR_SOURCE,
        service=world.billing,
        payload={"message": "health check fails"},
    )
    as_aiops = problem("aiops-learning", world.billing, "outcome: restart it")
    # a replay is not stored and skips live incidents: only aiops may mark one
    replayed = problem(world.billing, world.billing, "old failure").model_copy(
        update={"replay": True}
    )
    from_monitor = Event(
        event_type="ServiceUnhealthy",
        source=MONITOR_SOURCE,
        service=world.payments,
        payload={"message": "payments health check fails"},
    )

    ingestor, router = await ingest(
        settings,
        redis_client,
        database_url,
        db,
        [
            (world.billing_stream, as_monitor),
            (world.billing_stream, as_aiops),
            (world.billing_stream, replayed),
            (world.stranger_stream, as_monitor.model_copy(update={"id": uuid.uuid4()})),
            (world.monitor_stream, from_monitor),
        ],
    )

    rows = await stored(database_url)
    assert [(r["stream"], r["id"]) for r in rows] == [(world.monitor_stream, from_monitor.id)]
    assert [o.service for o in router.signalled] == [world.payments]

    dead = await dead_letters(redis_client, settings)
    reasons = [d["dead:reason"] for d in dead]
    assert len(dead) == 4 and ingestor.stats.untrusted == 4
    assert reasons[0] == (
        f"source 'aiops-monitor' is reserved for aiops' own agents and stream "
        f"{world.billing_stream} is not aiops': publish under the producer's own source name"
    )
    assert reasons[1].startswith("source 'aiops-learning' is reserved")
    assert reasons[2] == (
        f"only aiops marks events as replays (on {REPLAY_STREAM}), not stream "
        f"{world.billing_stream}: publish without the replay field"
    )
    assert reasons[3].startswith("source 'aiops-monitor' is reserved")
    assert dead[3]["dead:stream"] == world.stranger_stream


async def test_producers_mode_refuses_a_stream_nobody_owns(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    db: asyncpg.Pool,
    world: World,
) -> None:
    settings = settings_for(redis_url, database_url, stream_prefix, world, "producers")
    event = problem(world.stranger, world.stranger, "stranger failed")

    _, router = await ingest(
        settings, redis_client, database_url, db, [(world.stranger_stream, event)]
    )

    assert await stored(database_url) == [] and router.signalled == []
    [dead] = await dead_letters(redis_client, settings)
    assert dead["dead:reason"] == (
        f"stream {world.stranger_stream} belongs to no producer: aiops producers add "
        f"{world.stranger} --services ... (then publish with the producer's REDIS_URL)"
    )
    assert dead["event"]["id"] == str(event.id)


async def test_open_mode_keeps_todays_behaviour_for_ordinary_events(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    db: asyncpg.Pool,
    world: World,
) -> None:
    settings = settings_for(redis_url, database_url, stream_prefix, world, "open")
    # a stream without a producer may name any service, as before
    event = problem(world.stranger, world.payments, "payments called us and failed")

    ingestor, router = await ingest(
        settings, redis_client, database_url, db, [(world.stranger_stream, event)]
    )

    assert [r["id"] for r in await stored(database_url)] == [event.id]
    assert [o.service for o in router.signalled] == [world.payments]
    assert await entries_of(redis_client, settings.dead_letter_stream) == []
    assert ingestor.stats.untrusted == 0


async def test_a_running_listener_learns_new_producers_and_checks_them(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    redis_client: aioredis.Redis,
    db: asyncpg.Pool,
    world: World,
) -> None:
    """workers/listener.run_listener builds the check from settings and reloads producers."""
    settings = settings_for(redis_url, database_url, stream_prefix, world, "producers")
    stop = asyncio.Event()
    ready = asyncio.Event()
    run = asyncio.create_task(
        listener.run_listener(
            settings,
            consumer="trust-run",
            incidents=False,
            stop=stop,
            on_ready=lambda _: ready.set(),
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 30)
        early = problem(world.billing, world.billing, "before the producer existed")
        await redis_client.xadd(world.billing_stream, {"event": early.to_wire()})

        async def dead_count(n: int) -> bool:
            return len(await entries_of(redis_client, settings.dead_letter_stream)) == n

        await wait_for(lambda: dead_count(1), 20, "the early event dead-lettered")
        await ProducerStore(db).add(Producer(name=world.billing, services=[world.billing]))

        async def reloaded() -> bool:
            good = problem(world.billing, world.billing, f"after {uuid.uuid4()}")
            await redis_client.xadd(world.billing_stream, {"event": good.to_wire()})
            await asyncio.sleep(0.5)
            return len(await stored(database_url)) > 0

        await wait_for(reloaded, 20, "the producer known to the listener", interval=0.5)
        forged = problem(world.billing, world.payments, "restart payments")
        await redis_client.xadd(world.billing_stream, {"event": forged.to_wire()})
        await wait_for(lambda: dead_count_at_least(redis_client, settings, 2), 20, "forged")
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
    dead = await dead_letters(redis_client, settings)
    assert dead[0]["dead:reason"].startswith(f"stream {world.billing_stream} belongs to no")
    assert dead[-1]["event"]["id"] == str(forged.id)
    assert "may not speak for service" in dead[-1]["dead:reason"]
    assert forged.id not in {r["id"] for r in await stored(database_url)}


async def dead_count_at_least(client: aioredis.Redis, settings: Settings, n: int) -> bool:
    return len(await entries_of(client, settings.dead_letter_stream)) >= n


# --- the command line -----------------------------------------------------------------


@pytest.fixture
def cli_env(redis_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("AIOPS_EVENT_TRUST", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def aiops(*args: str) -> Result:
    return CliRunner().invoke(cli.app, ["producers", *args])


async def audit_rows(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            "SELECT actor, action, target, decision, details FROM audit_log "
            "WHERE action = 'producers' ORDER BY seq"
        )
    finally:
        await conn.close()


async def xadd_as(url: str, stream: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.xadd(stream, {"event": b"{}"})
    finally:
        await client.aclose()


def test_cli_add_list_set_remove_round_trip_with_audit(
    cli_env: None, redis_url: str, database_url: str, world: World
) -> None:
    added = aiops("add", world.billing, "--services", f"{world.billing},{world.payments}")
    assert added.exit_code == 0, added.output
    # without AIOPS_TOKEN (open mode) the change is audited as the OS user, with a warning
    warning, *lines = added.output.splitlines()
    assert warning.startswith("aiops: warning: registry changes are unauthenticated")
    assert lines[0] == (
        f"producer {world.billing}: stream {world.billing_stream}, "
        f"services {world.billing},{world.payments}"
    )
    [url] = [line.removeprefix("REDIS_URL=") for line in lines if line.startswith("REDIS_URL=")]
    assert url.startswith(f"redis://producer-{world.billing}:")
    assert any(line.startswith("publish: redis-cli -u") and "XADD" in line for line in lines)
    asyncio.run(xadd_as(url, world.billing_stream))  # the printed URL works
    with pytest.raises(redis.exceptions.NoPermissionError):
        asyncio.run(xadd_as(url, "events:monitor"))

    listed = aiops("list", "--json")
    assert listed.exit_code == 0, listed.output
    [entry] = [p for p in json.loads(listed.stdout) if p["name"] == world.billing]
    assert entry["services"] == [world.billing, world.payments]
    assert entry["stream"] == world.billing_stream and entry["redis_user"] is True
    assert world.billing in aiops("list").output

    again = aiops("add", world.billing, "--services", world.billing)
    assert isinstance(again.exception, ProducerError)
    assert "exists already" in str(again.exception)
    for reserved in ("monitor", "aiops-x", "dead", "replay", "Bad Name"):
        refused = aiops("add", reserved, "--services", "x")
        assert isinstance(refused.exception, ProducerError), refused.output
    assert "is reserved" in str(aiops("add", "api", "--services", "x").exception)

    changed = aiops("set", world.billing, "--services", world.billing)
    assert changed.exit_code == 0, changed.output

    removed = aiops("remove", world.billing)
    assert removed.exit_code == 0, removed.output
    assert f"Redis user producer-{world.billing} deleted" in removed.output
    with pytest.raises(redis.exceptions.AuthenticationError):
        asyncio.run(xadd_as(url, world.billing_stream))
    assert world.billing not in {p["name"] for p in json.loads(aiops("list", "--json").stdout)}
    assert isinstance(aiops("remove", world.billing).exception, ProducerError)

    rows = asyncio.run(audit_rows(database_url))
    user = getpass.getuser()
    assert [(r["actor"], r["target"], r["decision"]) for r in rows] == [
        (user, world.billing, "added"),
        (user, world.billing, "changed"),
        (user, world.billing, "removed"),
    ]
    details = [
        json.loads(r["details"]) if isinstance(r["details"], str) else r["details"] for r in rows
    ]
    assert details[0]["services"] == [world.billing, world.payments]
    assert details[1]["services"] == [world.billing]
    assert details[1]["before"] == [world.billing, world.payments]
    assert details[2]["services"] == [world.billing]
