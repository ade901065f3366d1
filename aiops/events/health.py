"""Health figures of the event mesh, for the API's /health and `aiops events health`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Final, Literal

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
from pydantic import BaseModel

from aiops.config import Settings
from aiops.events.consumer import (
    as_text,
    listener_counters_key,
    matching_streams,
    split_patterns,
)
from aiops.events.store import EventStore

# Beyond this many undelivered entries on Redis < 7 (no lag in XINFO GROUPS) the count
# stops, and lag_is_lower_bound says so.
LAG_COUNT_CAP: Final = 1000
# Oldest undelivered entry older than this: the listeners are not keeping up.
LAGGING_AFTER_S: Final = 60.0


class StreamHealth(BaseModel):
    stream: str
    length: int
    pending: int = 0
    consumers: int = 0
    lag: int | None = None
    lag_is_lower_bound: bool = False
    lag_seconds: float = 0.0
    group_exists: bool = True


class MeshHealth(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    checked_at: datetime
    group: str
    streams: list[StreamHealth]
    pending: int
    lag: int
    lag_seconds: float
    dead_letters: int
    processed_1h: int | None
    errors: list[str]
    # events every listener of the group stored but did not act on: they waited in their
    # stream longer than AIOPS_EVENTS_STALE_AFTER_S (a backlog read after an outage)
    stale_total: int = 0


def _id_millis(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


async def stream_health(client: aioredis.Redis, stream: str, group: str) -> StreamHealth:
    length = int(await client.xlen(stream))
    groups = {as_text(g["name"]): g for g in await client.xinfo_groups(stream)}
    info = groups.get(group)
    if info is None:
        return StreamHealth(stream=stream, length=length, lag=length, group_exists=False)
    last_delivered = as_text(info["last-delivered-id"])
    after = await client.xrange(stream, min="(" + last_delivered, count=1)
    lag_seconds = 0.0
    if after:
        lag_seconds = max(0.0, time.time() - _id_millis(as_text(after[0][0])) / 1000)
    lag: int | None
    lower_bound = False
    if info.get("lag") is not None:  # Redis 7+
        lag = int(info["lag"])
    elif not after:
        lag = 0
    else:
        ids = await _count_after(client, stream, last_delivered)
        lag, lower_bound = ids, ids >= LAG_COUNT_CAP
    return StreamHealth(
        stream=stream,
        length=length,
        pending=int(info["pending"]),
        consumers=int(info["consumers"]),
        lag=lag,
        lag_is_lower_bound=lower_bound,
        lag_seconds=round(lag_seconds, 3),
    )


async def _count_after(client: aioredis.Redis, stream: str, after_id: str) -> int:
    # Redis 6.2 cannot count entries after an id; read ids in pages up to the cap.
    count = 0
    cursor = "(" + after_id
    while count < LAG_COUNT_CAP:
        rows = await client.xrange(stream, min=cursor, count=min(200, LAG_COUNT_CAP - count))
        if not rows:
            break
        count += len(rows)
        cursor = "(" + as_text(rows[-1][0])
    return count


async def mesh_health(
    client: aioredis.Redis,
    store: EventStore | None,
    *,
    patterns: list[str],
    group: str,
    dead_letter_stream: str,
) -> MeshHealth:
    """Pending (XPENDING), consumer lag, dead letters, events stored in the last hour.

    A server that does not answer makes the status unhealthy and is named in errors;
    the function itself does not raise for that.
    """
    errors: list[str] = []
    streams: list[StreamHealth] = []
    dead_letters = 0
    stale = 0
    try:
        names = await matching_streams(
            client, patterns, exclude=dead_letter_stream, only_existing=True
        )
        streams = list(await asyncio.gather(*(stream_health(client, n, group) for n in names)))
        dead_letters = int(await client.xlen(dead_letter_stream))
        stale = int(await client.hget(listener_counters_key(group), "stale") or 0)
    except (redis.exceptions.RedisError, OSError) as error:
        errors.append(f"redis: {type(error).__name__}: {error}")
    processed: int | None = None
    if store is not None:
        try:
            processed = await store.processed_since(3600)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            errors.append(f"postgres: {type(error).__name__}: {error}")
    lag_seconds = max((s.lag_seconds for s in streams), default=0.0)
    status: Literal["healthy", "degraded", "unhealthy"] = "healthy"
    if errors:
        status = "unhealthy"
    elif lag_seconds > LAGGING_AFTER_S or any(not s.group_exists for s in streams):
        status = "degraded"
    return MeshHealth(
        status=status,
        checked_at=datetime.now(UTC),
        group=group,
        streams=streams,
        pending=sum(s.pending for s in streams),
        lag=sum(s.lag or 0 for s in streams),
        lag_seconds=lag_seconds,
        dead_letters=dead_letters,
        processed_1h=processed,
        errors=errors,
        stale_total=stale,
    )


async def mesh_health_from_settings(
    settings: Settings, client: aioredis.Redis, store: EventStore | None
) -> MeshHealth:
    return await mesh_health(
        client,
        store,
        patterns=split_patterns(settings.listener_streams),
        group=settings.listener_group,
        dead_letter_stream=settings.dead_letter_stream,
    )
