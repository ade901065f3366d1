"""`aiops worker` registers its agents (built-in and custom, from real entry points) in the
agents registry and heartbeats their health and track records; a broken entry point is
listed unhealthy with the reason; `aiops agents list` shows them; stopping says stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import typer
from cryptography.fernet import Fernet
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment
from test_agents_loading import _install
from typer.testing import CliRunner

from aiops.agents.presence import row_id
from aiops.agents.track import TrackRecords
from aiops.config import Settings, get_settings
from aiops.db.pool import create_pool
from aiops.registry.agents import AgentRecord, AgentRegistry
from workers.commands import services
from workers.worker import running_worker

app = typer.Typer()
app.add_typer(services.agents_app, name="agents")


async def _rows(database_url: str) -> dict[str, AgentRecord]:
    pool = await create_pool(database_url, max_size=1)
    try:
        return {r.id: r for r in await AgentRegistry(pool).discover()}
    finally:
        await pool.close()


async def test_worker_registers_and_heartbeats_its_agents(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install(site, {"cache-first": "cache_first:CacheFirst", "missing": "nowhere:Agent"})
    monkeypatch.syspath_prepend(str(site))
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        tracing="off",
        secret_key=SecretStr(Fernet.generate_key().decode()),
        home=tmp_path / "home",
        agent_heartbeat_s=0.2,
    )
    pool = await create_pool(database_url, max_size=1)
    try:
        await TrackRecords(pool).record("cache-first", "earlier", True)
    finally:
        await pool.close()
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    custom, broken = row_id("cache-first"), row_id("missing")
    async with running_worker(settings, temporal_env.client):
        await asyncio.sleep(0.6)  # a few heartbeats
        rows = await _rows(database_url)
        listed = await asyncio.to_thread(CliRunner().invoke, app, ["agents", "list"])
    stopped = await _rows(database_url)
    get_settings.cache_clear()

    builtin = {row_id(a) for a in ("aiops.diagnostic", "aiops.healing", "aiops.learning")}
    assert builtin | {row_id("aiops.monitor"), custom, broken} <= set(rows)
    assert rows[custom].health == "healthy" and not rows[custom].stale
    assert rows[custom].capabilities == ["diagnose:anomaly", "diagnose:error"]
    assert rows[custom].metadata["track_record"] == {
        "successes": 1,
        "failures": 0,
        "weight": round(2 / 3, 4),
    }
    assert rows[broken].health == "unhealthy"
    assert "cannot import nowhere:Agent" in rows[broken].metadata["error"]
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if x.startswith(custom))
    assert "healthy" in line and "1 healed/0 failed" in line
    assert all(stopped[i].health == "stopped" for i in builtin | {custom, broken})
