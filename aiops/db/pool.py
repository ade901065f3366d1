"""The asyncpg pool every service shares: JSON codecs, and pgvector's when available.

Sizes come from AIOPS_DB_POOL_MIN / AIOPS_DB_POOL_MAX (`sized`). A worker also has a lock
pool: a connection held for the whole of an action carries its advisory locks, and it
must never be one the action itself (or anyone it waits for) needs to draw from the main
pool, or enough actions at once hold every connection while each waits for another.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from aiops.config import Settings


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    has_vector = await conn.fetchval("SELECT 1 FROM pg_type WHERE typname = 'vector'")
    if has_vector:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)


async def create_pool(database_url: str, **kwargs: Any) -> asyncpg.Pool:
    options: dict[str, Any] = {"min_size": 1, "max_size": 10, "init": _init}
    options.update(kwargs)
    options["min_size"] = min(options["min_size"], options["max_size"])
    pool = await asyncpg.create_pool(database_url, **options)
    assert pool is not None
    return pool


def sized(settings: Settings) -> dict[str, int]:
    """create_pool's size arguments from the settings."""
    return {"min_size": settings.db_pool_min, "max_size": settings.db_pool_max}


async def create_lock_pool(database_url: str, max_size: int) -> asyncpg.Pool:
    """Connections that only hold advisory locks (and the writes made under them): one per
    action running at once, so max_size is the worker's AIOPS_WORKER_MAX_ACTIVITIES; none
    kept open while idle."""
    return await create_pool(database_url, min_size=0, max_size=max_size)
