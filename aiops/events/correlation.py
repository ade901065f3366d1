"""Which incident a service's health-probe failure belongs to, shared by every listener.

A service that reported a problem of its own recently (AIOPS_INCIDENT_CORRELATE_S) owns
its health-probe failures: they are counted on that incident instead of opening a second
one whose fix (a restart) would race the first's. The owner is kept in Redis, one key per
service with a PX expiry, so whichever listener reads the probe failure (another process,
or this one restarted) finds the same owner; without Redis (a router made by hand) it is
kept in this process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

import redis.asyncio as aioredis

from aiops.events.consumer import as_text

KEY_PREFIX: Final = "aiops:incident-owner:"


@dataclass
class CorrelationWindow:
    """service -> the workflow id of its latest own problem, for `window_s` seconds."""

    window_s: float
    redis: aioredis.Redis | None = None
    # scopes the keys, so two groups (or two test runs) on one Redis do not meet
    namespace: str = "aiops"
    _local: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.window_s > 0

    def _key(self, service: str) -> str:
        return f"{KEY_PREFIX}{self.namespace}:{service}"

    async def remember(self, owners: dict[str, str]) -> None:
        """Each service's own problem, seen now (one round trip for the batch)."""
        if not self.enabled or not owners:
            return
        if self.redis is None:
            now = time.monotonic()
            for service, workflow_id in owners.items():
                self._local[service] = (workflow_id, now)
            return
        px = max(1, int(self.window_s * 1000))
        async with self.redis.pipeline(transaction=False) as pipe:
            for service, workflow_id in owners.items():
                pipe.set(self._key(service), workflow_id, px=px)
            await pipe.execute()

    async def owner(self, service: str) -> str | None:
        if not self.enabled:
            return None
        if self.redis is None:
            found = self._local.get(service)
            if found is None or time.monotonic() - found[1] > self.window_s:
                return None
            return found[0]
        value = await self.redis.get(self._key(service))
        return None if value is None else as_text(value)

    async def forget(self, service: str, workflow_id: str) -> None:
        """Its start failed: no incident to join. Only if it is still the owner."""
        if self.redis is None:
            if self._local.get(service, ("", 0.0))[0] == workflow_id:
                del self._local[service]
            return
        await self.redis.eval(_DELETE_IF, 1, self._key(service), workflow_id)


# compare-and-delete, atomically: a newer owner set meanwhile by another listener stays
_DELETE_IF: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
