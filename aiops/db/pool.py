"""The asyncpg pool every service shares: JSON codecs, and pgvector's when available."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


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
    pool = await asyncpg.create_pool(database_url, **options)
    assert pool is not None
    return pool
