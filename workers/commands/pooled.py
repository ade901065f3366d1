"""Run one piece of a command's work with a small pool on the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from aiops.config import get_settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url

T = TypeVar("T")


def with_pool(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    async def run() -> T:
        pool = await create_pool(resolve_database_url(get_settings()), max_size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(run())
