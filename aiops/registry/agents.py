"""The agents registry: who is running (monitor, diagnostic, healing, learning, custom),
what each can do, and whether it is still alive.

An agent registers with a heartbeat interval and then heartbeats. It is stale when it has
missed `missed_heartbeats` of them in a row, judged by the database clock so processes on
hosts with skewed clocks agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

import asyncpg
from pydantic import BaseModel, Field

from aiops.errors import AiopsError

AgentHealth = Literal["unknown", "healthy", "degraded", "unhealthy", "stopped"]
DEFAULT_MISSED_HEARTBEATS: Final = 3
_INTERVAL_KEY: Final = "heartbeat_interval_s"


class UnknownAgent(AiopsError):
    pass


class AgentDefinition(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
    kind: str = Field(min_length=1, max_length=100, description="monitor, diagnostic, ...")
    capabilities: list[str] = Field(default_factory=list)
    heartbeat_interval_s: float = Field(default=30.0, gt=0, le=86_400)
    metadata: dict[str, Any] = Field(default_factory=dict)


class AgentRecord(AgentDefinition):
    health: AgentHealth
    last_heartbeat: datetime | None
    registered_at: datetime
    stale: bool = Field(description="missed too many heartbeats (and not stopped)")

    @property
    def status(self) -> str:
        """What an operator should read: the reported health, or stale when it went quiet."""
        return "stale" if self.stale else self.health


_SELECT: Final = """
    SELECT *, health <> 'stopped' AND (
        last_heartbeat IS NULL
        OR now() - last_heartbeat
           > make_interval(secs => COALESCE((metadata->>'heartbeat_interval_s')::float8, 30) * $1)
    ) AS stale
    FROM agents
"""


class AgentRegistry:
    def __init__(
        self, pool: asyncpg.Pool, missed_heartbeats: int = DEFAULT_MISSED_HEARTBEATS
    ) -> None:
        if missed_heartbeats < 1:
            raise ValueError("missed_heartbeats must be at least 1")
        self._pool = pool
        self._missed = missed_heartbeats

    async def register(
        self, agent: AgentDefinition, health: AgentHealth = "healthy"
    ) -> AgentRecord:
        """Create or replace an agent; registering counts as a heartbeat."""
        await self._pool.execute(
            """
            INSERT INTO agents (id, kind, capabilities, health, last_heartbeat, metadata)
            VALUES ($1, $2, $3, $4, now(), $5)
            ON CONFLICT (id) DO UPDATE SET
                kind = EXCLUDED.kind, capabilities = EXCLUDED.capabilities,
                health = EXCLUDED.health, last_heartbeat = now(), metadata = EXCLUDED.metadata
            """,
            agent.id,
            agent.kind,
            agent.capabilities,
            health,
            {**agent.metadata, _INTERVAL_KEY: agent.heartbeat_interval_s},
        )
        return await self.get(agent.id)

    async def heartbeat(
        self, agent_id: str, health: AgentHealth = "healthy", detail: dict[str, Any] | None = None
    ) -> None:
        """I am alive (and this is how I feel); `detail` is merged into the metadata."""
        result: str = await self._pool.execute(
            "UPDATE agents SET last_heartbeat = now(), health = $2,"
            " metadata = metadata || $3::jsonb WHERE id = $1",
            agent_id,
            health,
            detail or {},
        )
        if result.endswith(" 0"):
            raise UnknownAgent(f"agent {agent_id!r} is not registered: register it first")

    async def get(self, agent_id: str) -> AgentRecord:
        row = await self._pool.fetchrow(_SELECT + " WHERE id = $2", self._missed, agent_id)
        if row is None:
            raise UnknownAgent(f"agent {agent_id!r} is not registered")
        return _record(row)

    async def discover(
        self, capability: str | None = None, kind: str | None = None
    ) -> list[AgentRecord]:
        """Agents, optionally with a capability or of a kind, by kind then id."""
        rows = await self._pool.fetch(
            _SELECT + " WHERE ($2::text IS NULL OR $2 = ANY(capabilities))"
            " AND ($3::text IS NULL OR kind = $3) ORDER BY kind, id",
            self._missed,
            capability,
            kind,
        )
        return [_record(row) for row in rows]

    async def deregister(self, agent_id: str) -> bool:
        result: str = await self._pool.execute("DELETE FROM agents WHERE id = $1", agent_id)
        return result.endswith(" 1")


def _record(row: asyncpg.Record) -> AgentRecord:
    metadata = dict(row["metadata"] or {})
    interval = float(metadata.pop(_INTERVAL_KEY, 30.0))
    return AgentRecord(
        id=row["id"],
        kind=row["kind"],
        capabilities=list(row["capabilities"]),
        heartbeat_interval_s=interval,
        metadata=metadata,
        health=row["health"] if row["health"] in _HEALTHS else "unknown",
        last_heartbeat=row["last_heartbeat"],
        registered_at=row["registered_at"],
        stale=bool(row["stale"]),
    )


_HEALTHS: Final = frozenset({"unknown", "healthy", "degraded", "unhealthy", "stopped"})
