"""Shared helpers of the event-mesh tests (no tests here): settings pointed at the test
servers and streams, an in-process ingestor, and waiting for a condition."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis

from aiops.config import Settings
from aiops.events.ingest import Ingestor
from aiops.events.routing import IncidentRouter, Subscription
from aiops.events.store import EventStore
from aiops.fingerprint import Fingerprinter
from workers import listener

ROOT = Path(__file__).resolve().parents[1]


def mesh_settings(redis_url: str, database_url: str, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "listener_streams": f"{prefix}:*",
        "dead_letter_stream": f"{prefix}:dead",
        "listener_group": "aiops",
        "listener_batch_size": 500,
        "listener_block_ms": 100,
        "listener_claim_idle_ms": 500,
        # these tests write their own streams as the default user: no producer accounts
        "event_trust": "open",
    }
    values.update(overrides)
    return Settings(**values)


def mesh_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env.update(
        {
            "REDIS_URL": str(settings.redis_url),
            "DATABASE_URL": str(settings.database_url),
            "AIOPS_LISTENER_STREAMS": settings.listener_streams,
            "AIOPS_DEAD_LETTER_STREAM": settings.dead_letter_stream,
            "AIOPS_LISTENER_GROUP": settings.listener_group,
            "AIOPS_LISTENER_BATCH_SIZE": str(settings.listener_batch_size),
            "AIOPS_LISTENER_BLOCK_MS": str(settings.listener_block_ms),
            "AIOPS_LISTENER_CLAIM_IDLE_MS": str(settings.listener_claim_idle_ms),
            "AIOPS_LOG_LEVEL": "INFO",
            "AIOPS_EVENT_TRUST": settings.event_trust_mode,
        }
    )
    env.update(extra)
    return env


def spawn_listener(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`python -m workers.listener --no-incidents ...` as a real process."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.listener", "--no-incidents", *args],
            env=mesh_env(settings),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def make_ingestor(
    settings: Settings,
    client: aioredis.Redis,
    store: EventStore,
    *,
    consumer: str = "test-consumer",
    incidents: IncidentRouter | None = None,
    subscriptions: Sequence[Subscription] = (),
) -> Ingestor:
    return listener.make_ingestor(
        settings,
        client,
        store,
        consumer=consumer,
        incidents=incidents,
        subscriptions=subscriptions,
    )


def fingerprinter_for_tests() -> Fingerprinter:
    return Fingerprinter()


async def drain(ingestor: Ingestor, *, idle_reads: int = 2) -> None:
    """Process batches until the streams have nothing more for this consumer."""
    await ingestor.consumer.discover(force=True)
    quiet = 0
    while quiet < idle_reads:
        entries = await ingestor.consumer.read()
        if entries:
            await ingestor.process(entries)
            quiet = 0
        else:
            quiet += 1


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_sync(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def incident_router(client: Any, task_queue: str, **kw: Any) -> IncidentRouter:
    from aiops.events.detection import DefaultDetector

    return IncidentRouter(
        client,
        task_queue=task_queue,
        detector=DefaultDetector(),
        fingerprinter=fingerprinter_for_tests(),
        **kw,
    )


Entries = list[tuple[bytes, dict[bytes, bytes]]]


async def entries_of(client: aioredis.Redis, stream: str) -> Entries:
    """A stream's entries, typed (the client is made without decode_responses)."""
    return cast(Entries, await client.xrange(stream))


async def pending(client: aioredis.Redis, stream: str, group: str) -> int:
    return int((await client.xpending(stream, group))["pending"])
