"""`aiops services | agents | limits | monitor` on real servers; credentials never shown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import typer
from cryptography.fernet import Fernet
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from aiops.auth.roles import Role
from aiops.auth.tokens import issue_token
from aiops.config import get_settings
from aiops.errors import AiopsError
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.monitor.limits import LIMITS
from aiops.registry.agents import AgentDefinition, AgentRegistry
from workers.commands import limits, monitor, services
from workers.commands.monitor import run_monitor

ROOT = Path(__file__).resolve().parents[1]
SECRET = "tok-super-secret-42"
ENV_SECRET = "pw-env-secret-99"

app = typer.Typer()
app.add_typer(services.app, name="services")
app.add_typer(services.agents_app, name="agents")
app.add_typer(limits.app, name="limits")
app.command("monitor")(monitor.monitor)


JWT_SECRET = "monitor-cli-test-" + "x" * 32


@pytest.fixture
def cli_env(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env.update(
        {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "AIOPS_HOME": str(tmp_path),
            "AIOPS_SECRET_KEY": Fernet.generate_key().decode(),
            "AIOPS_TRACING": "off",
            "AIOPS_MONITOR_STREAM": f"{stream_prefix}:monitor",
            "AIOPS_ANOMALY_STREAMS": f"{stream_prefix}:*",
            "AIOPS_DEAD_LETTER_STREAM": f"{stream_prefix}:dead",
            "AIOPS_MONITOR_SYNC_INTERVAL_S": "1",
            "AIOPS_LISTENER_BLOCK_MS": "100",
            "AIOPS_ANOMALY_WARMUP": "10",
            # TEMPORAL_ADDRESS makes this production's signed mode: registry changes need
            # an admin's token
            "AIOPS_JWT_SECRET": JWT_SECRET,
            "AIOPS_TOKEN": issue_token(JWT_SECRET, "admin-alice", [Role.ADMIN], timedelta(hours=1)),
        }
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    """Exit code (1 with the error in the output for an AiopsError, as the CLI prints it)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, (SystemExit, AiopsError)):
        raise result.exception
    if isinstance(result.exception, AiopsError):
        return result.exception.exit_code, result.output + f"aiops: error: {result.exception}"
    return result.exit_code, result.output


async def arun(*args: str) -> tuple[int, str]:
    # the commands run their own event loop: off this test's loop
    return await asyncio.to_thread(run, *args)


def services_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "services.yaml"
    path.write_text(
        f"""
services:
  - name: {name}
    endpoint: http://127.0.0.1:9/
    capabilities: [crud, search]
    critical: true
    owner: team-a
    credentials: {SECRET}
    env: {{DB_PASSWORD: {ENV_SECRET}}}
    admin_endpoints: {{cache_clear: /admin/cache}}
    metadata: {{probe_interval_s: 10}}
  - name: {name}-search
    endpoint: http://127.0.0.1:9
    capabilities: [search]
"""
    )
    return path


def test_services_register_list_deregister_never_show_credentials(
    cli_env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outputs: list[str] = []

    def cli(*args: str) -> tuple[int, str]:
        code, out = run(*args)
        outputs.append(out)
        return code, out

    code, out = cli("services", "register", str(services_file(tmp_path, "bookmarks")))
    assert code == 0, out
    assert "registered bookmarks: http://127.0.0.1:9 (capabilities crud,search" in out
    assert "credentials stored encrypted" in out and "registered bookmarks-search" in out

    code, out = cli("services", "list")
    assert code == 0 and out.count("unknown") == 2 and "critical" in out
    code, out = cli("services", "list", "--json", "--capability", "crud")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["bookmarks"]
    assert rows[0]["has_credentials"] is True and "credentials" not in rows[0]
    assert rows[0]["env"] == {"DB_PASSWORD": "***"} and rows[0]["owner"] == "team-a"
    assert rows[0]["metadata"] == {"probe_interval_s": 10}
    code, out = cli("services", "list", "--capability", "search", "--capability", "crud")
    assert "bookmarks " in out and "bookmarks-search" not in out
    code, out = cli("services", "list", "--healthy-only")
    assert code == 0 and out.strip() == "no match"

    code, out = cli("services", "deregister", "bookmarks-search")
    assert code == 0 and out.strip() == "deregistered bookmarks-search"
    code, out = cli("services", "deregister", "bookmarks-search")
    assert code == 2 and "'bookmarks-search' is not registered" in out
    code, out = cli("services", "list", "--json")
    assert [r["name"] for r in json.loads(out)] == ["bookmarks"]

    # a bad file names the field, never the value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "endpoint": "ftp://h", "credentials": SECRET}))
    code, out = cli("services", "register", str(bad))
    assert code == 2 and "endpoint" in out and "http(s)://" in out
    bad.write_text(json.dumps({"name": "x", "endpoint": "http://h", "credentials": [SECRET]}))
    code, out = cli("services", "register", str(bad))
    assert code == 2 and "credentials: Input should be a valid string" in out
    bad.write_text(
        json.dumps({"name": "x", "endpoint": "http://h", "metadata": {"probe_interval_s": 0}})
    )
    code, out = cli("services", "register", str(bad))
    assert code == 2 and "probe_interval_s" in out
    code, out = cli("services", "register", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read" in out

    shown = "\n".join(outputs) + caplog.text
    assert SECRET not in shown and ENV_SECRET not in shown


async def test_agents_list(cli_env: dict[str, str], pool: asyncpg.Pool) -> None:
    agents = AgentRegistry(pool)
    await agents.register(
        AgentDefinition(id="monitor-1", kind="monitor", capabilities=["health_probe"])
    )
    await agents.register(AgentDefinition(id="old", kind="diagnostic", heartbeat_interval_s=1))
    await pool.execute(
        "UPDATE agents SET last_heartbeat = now() - interval '1 minute' WHERE id = 'old'"
    )
    code, out = await arun("agents", "list", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert code == 0 and rows["monitor-1"]["status"] == "healthy"
    assert rows["old"]["status"] == "stale" and rows["old"]["stale"] is True
    code, out = await arun("agents", "list")
    assert "monitor-1" in out and "stale" in out
    code, out = await arun("agents", "list", "--capability", "health_probe")
    assert "monitor-1" in out and "old" not in out


def test_limits_show_set_reset(cli_env: dict[str, str]) -> None:
    code, out = run("limits", "show")
    assert code == 0 and "max_agents" in out and "16  default" in out
    code, out = run("limits", "set", "max_agents", "4")
    assert code == 0 and out.strip() == "max_agents = 4"
    code, out = run("limits", "show", "--json")
    shown = json.loads(out)
    assert shown["max_agents"] == {
        "value": 4,
        "set": True,
        "honoured_by": LIMITS["max_agents"],
    }
    assert shown["anomaly_cache_size"]["set"] is False
    code, out = run("limits", "set", "max_cats", "4")
    assert code == 2 and "unknown limit 'max_cats'; known: max_agents" in out
    code, out = run("limits", "set", "max_agents", "0")
    assert code == 2 and "invalid value 0 for max_agents" in out
    code, out = run("limits", "reset", "max_agents")
    assert code == 0 and out.strip() == "max_agents = 16 (default)"


async def test_monitor_once_syncs_the_schedules(
    cli_env: dict[str, str], tmp_path: Path, temporal_env: WorkflowEnvironment
) -> None:
    await arun("services", "register", str(services_file(tmp_path, "once-svc")))
    try:
        code, out = await arun("monitor", "--once", "--no-anomalies")
        assert code == 0, out
        assert "probe schedules: 2 created, 0 updated, 0 deleted" in out
    finally:
        for name in ("once-svc", "once-svc-search"):
            with contextlib.suppress(RPCError):
                await temporal_env.client.get_schedule_handle(f"probe-{name}").delete()


async def test_monitor_process_heartbeats_and_stops_on_sigterm(
    cli_env: dict[str, str], tmp_path: Path, pool: asyncpg.Pool, temporal_env: WorkflowEnvironment
) -> None:
    await arun("services", "register", str(services_file(tmp_path, "sig-svc")))
    log = tmp_path / "monitor.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from workers.cli import main; main()",
            "monitor",
            cwd=ROOT,
            env=cli_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "created schedule probe-sig-svc" not in log.read_text():
            assert process.returncode is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)
        [agent] = await AgentRegistry(pool).discover(kind="monitor")
        assert agent.health == "healthy"
        assert agent.capabilities == ["health_probe", "anomaly_detection"]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        text = log.read_text()
        assert "SIGTERM: finishing the batch in hand" in text and "stopped" in text
        assert SECRET not in text and ENV_SECRET not in text
        stopped = await AgentRegistry(pool).get(agent.id)
        assert stopped.status == "stopped"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for name in ("sig-svc", "sig-svc-search"):
            with contextlib.suppress(RPCError):
                await temporal_env.client.get_schedule_handle(f"probe-{name}").delete()


async def test_run_monitor_raises_anomalies_and_heartbeats(
    cli_env: dict[str, str], pool: asyncpg.Pool, stream_prefix: str, redis_url: str
) -> None:
    lines: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_monitor(
            get_settings(), stop=stop, probes=False, agent_id="monitor-t", echo=lines.append
        )
    )
    mesh = EventMesh.from_settings(get_settings(), redis_url)
    try:
        values = [50.0 + (i % 5) for i in range(30)] + [95.0] * 5
        await mesh.publish_many(
            [
                Event(event_type="MetricReport", source="importer", payload={"queue_depth": v})
                for v in values
            ],
            stream=f"{stream_prefix}:app",
        )
        deadline = time.monotonic() + 30
        while True:
            out = await mesh.redis.xrange(f"{stream_prefix}:monitor")
            if out:
                break
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, lines
            await asyncio.sleep(0.1)
        agent = await AgentRegistry(pool).get("monitor-t")
        assert agent.status == "healthy" and agent.capabilities == ["anomaly_detection"]
    finally:
        stop.set()
        summary = await asyncio.wait_for(task, 30)
        await mesh.aclose()
    assert summary.anomalies == 1 and summary.samples == 35 and summary.syncs == 0
    stopped = await AgentRegistry(pool).get("monitor-t")
    assert stopped.status == "stopped" and stopped.metadata["anomalies"] == 1
    assert any(line.startswith("monitor: no probes; anomalies:") for line in lines)
    assert lines[-1] == "monitor monitor-t stopped"
