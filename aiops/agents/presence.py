"""Agents in the agents registry: registered when a worker starts, heartbeating while it
runs with their health and track record, stopped when it stops.

A row is `<agent_id>@<host>` (each worker process runs its own copy of every agent); the
track record belongs to the agent id. An agent that raised or timed out on its last call
is reported unhealthy until a call succeeds, whatever its own health_check says; an entry
point that failed to load is registered unhealthy with the reason, so `aiops agents list`
shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from aiops.agents.loader import AgentLoadError
from aiops.agents.protocol import UniversalAgent
from aiops.agents.track import TrackRecords
from aiops.events.cancel import cancel_and_wait
from aiops.registry.agents import AgentDefinition, AgentHealth, AgentRegistry, UnknownAgent

log = logging.getLogger(__name__)

_RANK: Final[dict[str, int]] = {
    "healthy": 0,
    "unknown": 1,
    "degraded": 2,
    "unhealthy": 3,
    "stopped": 4,
}
_NOT_ID: Final = re.compile(r"[^A-Za-z0-9_.:-]")


def row_id(agent_id: str, host: str | None = None) -> str:
    host = _NOT_ID.sub("-", host or socket.gethostname())[:40] or "host"
    return f"{_NOT_ID.sub('-', agent_id)[:150]}@{host}"


class AgentPresence:
    def __init__(
        self,
        pool: asyncpg.Pool,
        agents: Sequence[UniversalAgent],
        *,
        broken: Sequence[AgentLoadError] = (),
        interval_s: float = 30.0,
        timeout_s: float = 5.0,
        host: str | None = None,
    ) -> None:
        self.registry = AgentRegistry(pool)
        self.tracks = TrackRecords(pool)
        self.agents = list(agents)
        self.broken = list(broken)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.host = host or socket.gethostname()
        self.last_error: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def row(self, agent_id: str) -> str:
        return row_id(agent_id, self.host)

    def report(self, agent_id: str, error: str | None) -> None:
        """The outcome of the agent's last call: an error makes it unhealthy until a call
        succeeds."""
        if error is None:
            self.last_error.pop(agent_id, None)
        else:
            self.last_error[agent_id] = error

    async def failed(self, agent_id: str, error: str) -> None:
        """Report a failed call now, not at the next heartbeat."""
        self.report(agent_id, error)
        with contextlib.suppress(UnknownAgent):
            await self.registry.heartbeat(self.row(agent_id), "unhealthy", {"detail": error[:500]})

    async def start(self) -> None:
        for agent in self.agents:
            await self.registry.register(
                AgentDefinition(
                    id=self.row(agent.agent_id),
                    kind=agent.kind[:100] or "custom",
                    capabilities=list(agent.capabilities),
                    heartbeat_interval_s=self.interval_s,
                    metadata={"agent_id": agent.agent_id},
                ),
                health="unknown",
            )
        for error in self.broken:
            await self.registry.register(
                AgentDefinition(
                    id=self.row(error.entry_point),
                    kind="custom",
                    heartbeat_interval_s=self.interval_s,
                    metadata={"entry_point": error.entry_point, "error": error.reason[:500]},
                ),
                health="unhealthy",
            )
        await self.beat()
        self._task = asyncio.create_task(self._beat_forever())

    async def beat(self, stopping: bool = False) -> None:
        records = await self.tracks.get(a.agent_id for a in self.agents)
        checks = await asyncio.gather(*(self._health(a) for a in self.agents))
        for agent, (health, detail) in zip(self.agents, checks, strict=True):
            record = records[agent.agent_id]
            info: dict[str, Any] = {
                "track_record": {
                    "successes": record.successes,
                    "failures": record.failures,
                    "weight": round(record.weight, 4),
                },
                "detail": detail,
            }
            await self.registry.heartbeat(
                self.row(agent.agent_id), "stopped" if stopping else health, info
            )
        for error in self.broken:
            await self.registry.heartbeat(
                self.row(error.entry_point), "stopped" if stopping else "unhealthy"
            )

    async def _health(self, agent: UniversalAgent) -> tuple[AgentHealth, str]:
        try:
            status = await asyncio.wait_for(agent.health_check(), self.timeout_s)
            health, detail = status.health, status.detail
        except TimeoutError:
            health, detail = "unhealthy", f"health_check timed out after {self.timeout_s:g}s"
        except Exception as error:
            health, detail = "unhealthy", f"health_check raised {error!r}"
        failed = self.last_error.get(agent.agent_id)
        if failed is not None and _RANK[health] < _RANK["unhealthy"]:
            health, detail = "unhealthy", failed
        return health, detail[:500]

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.beat()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("agent heartbeat failed (retrying next interval): %s", error)

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.beat(stopping=True)
