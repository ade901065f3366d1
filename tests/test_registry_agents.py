"""The agents registry on real PostgreSQL: register, heartbeat, discover, stale detection."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import ValidationError

from aiops.registry.agents import AgentDefinition, AgentRegistry, UnknownAgent


async def test_register_heartbeat_discover_deregister(pool: asyncpg.Pool) -> None:
    agents = AgentRegistry(pool)
    monitor = await agents.register(
        AgentDefinition(
            id="monitor@host-1",
            kind="monitor",
            capabilities=["health_probe", "anomaly_detection"],
            metadata={"pid": 41},
        )
    )
    assert monitor.health == "healthy" and not monitor.stale and monitor.status == "healthy"
    assert monitor.heartbeat_interval_s == 30 and monitor.metadata == {"pid": 41}
    await agents.register(AgentDefinition(id="diag-1", kind="diagnostic", capabilities=["rca"]))
    await agents.heartbeat("diag-1", "degraded", {"queue": 3})
    diag = await agents.get("diag-1")
    assert diag.health == "degraded" and diag.metadata == {"queue": 3}

    assert [a.id for a in await agents.discover()] == ["diag-1", "monitor@host-1"]
    assert [a.id for a in await agents.discover(capability="health_probe")] == ["monitor@host-1"]
    assert [a.id for a in await agents.discover(kind="diagnostic")] == ["diag-1"]
    assert await agents.discover(capability="healing") == []

    # registering again replaces the definition
    await agents.register(AgentDefinition(id="diag-1", kind="diagnostic", capabilities=["a", "b"]))
    assert (await agents.get("diag-1")).capabilities == ["a", "b"]
    assert await agents.deregister("diag-1") is True
    assert await agents.deregister("diag-1") is False
    with pytest.raises(UnknownAgent, match="diag-1"):
        await agents.get("diag-1")
    with pytest.raises(UnknownAgent, match="register it first"):
        await agents.heartbeat("diag-1")


async def test_stale_after_missed_heartbeats(pool: asyncpg.Pool) -> None:
    agents = AgentRegistry(pool, missed_heartbeats=3)
    await agents.register(AgentDefinition(id="a", kind="monitor", heartbeat_interval_s=10))
    await agents.register(AgentDefinition(id="b", kind="monitor", heartbeat_interval_s=10))
    # a missed two heartbeats: still alive; b missed four: stale
    await pool.execute(
        "UPDATE agents SET last_heartbeat = now() - interval '25 seconds' WHERE id='a'"
    )
    await pool.execute(
        "UPDATE agents SET last_heartbeat = now() - interval '41 seconds' WHERE id='b'"
    )
    by_id = {a.id: a for a in await agents.discover()}
    assert not by_id["a"].stale and by_id["b"].stale and by_id["b"].status == "stale"
    await agents.heartbeat("b")
    assert not (await agents.get("b")).stale
    # an agent that said it stopped is stopped, not stale
    await agents.heartbeat("b", "stopped")
    await pool.execute("UPDATE agents SET last_heartbeat = now() - interval '1 hour' WHERE id='b'")
    stopped = await agents.get("b")
    assert not stopped.stale and stopped.status == "stopped"
    # one missed heartbeat is enough when the registry says so
    strict = AgentRegistry(pool, missed_heartbeats=1)
    assert (await strict.get("a")).stale


def test_definition_validation() -> None:
    with pytest.raises(ValidationError):
        AgentDefinition(id="bad id", kind="monitor")
    with pytest.raises(ValidationError):
        AgentDefinition(id="x", kind="monitor", heartbeat_interval_s=0)
    with pytest.raises(ValueError, match="at least 1"):
        AgentRegistry.__init__(object.__new__(AgentRegistry), None, missed_heartbeats=0)  # type: ignore[arg-type]
