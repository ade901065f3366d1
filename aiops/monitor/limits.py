"""Limits an operator changes while processes run (the seed's set_max_agents and
set_cache_size), stored in PostgreSQL's runtime_limits table.

A limit with no row has its default from settings. Running processes re-read the table
through a LimitsCache at most every few seconds, so `aiops limits set max_agents 4` takes
effect without a restart. What honours each limit is listed in LIMITS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import asyncpg
from pydantic import BaseModel, Field, ValidationError

from aiops.config import Settings
from aiops.errors import AiopsError

DEFAULT_MAX_DIAGNOSES: Final = 10
REFRESH_S: Final = 5.0


class LimitsError(AiopsError):
    exit_code = 2


class RuntimeLimits(BaseModel):
    max_agents: int = Field(ge=1, le=100_000)
    max_diagnoses: int = Field(ge=1, le=100_000)
    anomaly_cache_size: int = Field(ge=1, le=10_000_000)


# name -> who reads it; `aiops limits show` prints this so nobody guesses.
LIMITS: Final[dict[str, str]] = {
    "max_agents": "health probes each worker runs at once (the monitor agent's probes)",
    "max_diagnoses": "knowledge-graph searches (embed + query) each worker runs at once",
    "anomaly_cache_size": "(service, metric) baselines `aiops monitor` keeps in memory (LRU)",
}


# the settings' defaults, for code that runs without Settings (tests, benches)
BUILTIN_LIMITS: Final = RuntimeLimits(max_agents=16, max_diagnoses=10, anomaly_cache_size=10_000)


def default_limits(settings: Settings) -> RuntimeLimits:
    return RuntimeLimits(
        max_agents=settings.max_agents,
        max_diagnoses=DEFAULT_MAX_DIAGNOSES,
        anomaly_cache_size=settings.anomaly_cache_size,
    )


def _check_name(name: str) -> None:
    if name not in LIMITS:
        raise LimitsError(f"unknown limit {name!r}; known: {', '.join(LIMITS)}")


class LimitsStore:
    def __init__(self, pool: asyncpg.Pool, defaults: RuntimeLimits) -> None:
        self._pool = pool
        self.defaults = defaults

    async def overrides(self) -> dict[str, int]:
        """The limits set at run time (the rest are defaults)."""
        rows = await self._pool.fetch("SELECT name, value FROM runtime_limits")
        return {row["name"]: int(row["value"]) for row in rows if row["name"] in LIMITS}

    async def read(self) -> RuntimeLimits:
        values = self.defaults.model_dump()
        values.update(await self.overrides())
        try:
            return RuntimeLimits.model_validate(values)
        except ValidationError:
            # a row written by hand outside the bounds: the defaults keep processes running
            return self.defaults

    async def set(self, name: str, value: int) -> RuntimeLimits:
        _check_name(name)
        try:
            RuntimeLimits.model_validate({**self.defaults.model_dump(), name: value})
        except ValidationError as error:
            reason = error.errors()[0]["msg"]
            raise LimitsError(f"invalid value {value} for {name}: {reason}") from None
        await self._pool.execute(
            "INSERT INTO runtime_limits (name, value) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            name,
            value,
        )
        return await self.read()

    async def reset(self, name: str | None = None) -> RuntimeLimits:
        """Back to the default: one limit, or all of them."""
        if name is None:
            await self._pool.execute("DELETE FROM runtime_limits")
        else:
            _check_name(name)
            await self._pool.execute("DELETE FROM runtime_limits WHERE name = $1", name)
        return await self.read()


class LimitsCache:
    """The current limits for a running process, re-read at most every refresh_s."""

    def __init__(self, store: LimitsStore, refresh_s: float = REFRESH_S) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._value = store.defaults
        self._read_at = -1e9
        self._lock = asyncio.Lock()

    @property
    def last(self) -> RuntimeLimits:
        return self._value

    async def current(self) -> RuntimeLimits:
        if time.monotonic() - self._read_at < self._refresh_s:
            return self._value
        async with self._lock:
            if time.monotonic() - self._read_at >= self._refresh_s:
                self._value = await self._store.read()
                self._read_at = time.monotonic()
        return self._value


class AdjustableLimiter:
    """A semaphore whose capacity can change while tasks hold it: shrinking lets the
    holders finish and admits no one until the count is under the new capacity."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._in_use = 0
        self._changed = asyncio.Condition()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        return self._in_use

    async def resize(self, capacity: int) -> None:
        async with self._changed:
            self._capacity = max(1, capacity)
            self._changed.notify_all()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self._in_use < self._capacity)
            self._in_use += 1
        try:
            yield
        finally:
            async with self._changed:
                self._in_use -= 1
                self._changed.notify()
