"""The event commands on a small Typer app (workers/cli.py registers the same functions),
and the documented redis-cli line, run as written."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis
import typer
from test_events_helpers import ROOT, drain, make_ingestor, mesh_env, mesh_settings
from typer.testing import CliRunner

from aiops.config import get_settings
from aiops.devstack import binaries
from aiops.events.store import EventStore
from workers.commands import events as commands

app = typer.Typer()
app.command("publish")(commands.publish)
app.command("listen")(commands.listen)
app.add_typer(commands.app, name="events")


@pytest.fixture
def cli_env(
    redis_url: str, database_url: str, stream_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    env = mesh_env(mesh_settings(redis_url, database_url, stream_prefix))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def test_parse_time() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert commands.parse_time("2h", now) == now - timedelta(hours=2)
    assert commands.parse_time("90s", now) == now - timedelta(seconds=90)
    assert commands.parse_time("1w", now) == now - timedelta(weeks=1)
    assert commands.parse_time("2026-01-01T10:00:00") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert commands.parse_time("2026-01-01T10:00:00+01:00").hour == 10
    with pytest.raises(commands.EventsCommandError, match="not a time"):
        commands.parse_time("yesterday")


def test_publish_query_tree_replay_dead_health(
    cli_env: dict[str, str], stream_prefix: str, redis_url: str, database_url: str
) -> None:
    stream = f"{stream_prefix}:cli"
    code, out, error = run(
        "publish",
        "ServiceTimeout",
        "--source",
        "import-service",
        "--payload",
        '{"duration_s": 30}',
        "--severity",
        "WARN",
        "--stream",
        stream,
    )
    assert code == 0, (out, error)
    root_id = uuid.UUID(out.strip())
    code, out, _ = run(
        "publish", "Anomaly", "-s", "monitor", "--causation-id", str(root_id), "--stream", stream
    )
    child_id = uuid.UUID(out.strip())

    code, out, error = run("publish", "X", "--source", "s", "--payload", "[1]")
    assert isinstance(error, commands.EventsCommandError) and "JSON object" in str(error)
    code, out, error = run("publish", "bad type", "--source", "s")
    assert isinstance(error, commands.EventsCommandError) and "event_type" in str(error)
    code, out, error = run("publish", "A", "--source", "s", "--stream", f"{stream_prefix}:dead")
    assert isinstance(error, commands.EventsCommandError) and "dead-letter" in str(error)

    client = redis.Redis.from_url(redis_url)
    client.xadd(stream, {"event": b"not json"})
    client.close()

    async def listen_once() -> None:
        settings = mesh_settings(redis_url, database_url, stream_prefix)
        import redis.asyncio as aioredis

        aclient = aioredis.Redis.from_url(redis_url)
        store = await EventStore.connect(database_url)
        try:
            await drain(make_ingestor(settings, aclient, store))
        finally:
            await aclient.aclose()
            await store.close()

    asyncio.run(listen_once())

    code, out, _ = run("events", "query", "--since", "1h", "--type", "ServiceTimeout")
    assert code == 0
    [line] = out.strip().splitlines()
    stored = json.loads(line)
    assert stored["event"]["id"] == str(root_id) and stored["event"]["severity"] == "warning"
    assert stored["event"]["payload"] == {"duration_s": 30} and stored["stream"] == stream

    code, out, _ = run("events", "tree", str(child_id))
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith(str(root_id)) and "ServiceTimeout" in lines[0]
    assert lines[1].startswith(f"  {child_id}")

    code, out, _ = run("events", "dead")
    [letter] = [json.loads(x) for x in out.strip().splitlines()]
    assert letter["event"] == "not json" and "Invalid JSON" in letter["dead:reason"]

    code, out, _ = run("events", "health", "--json")
    health = json.loads(out)
    assert health["dead_letters"] == 1 and health["processed_1h"] == 2
    assert health["pending"] == 0 and health["status"] == "healthy"
    assert health["stale_total"] >= 0  # the group's count of events stored, not acted on
    code, out, _ = run("events", "health")
    assert out.startswith("status healthy: pending 0")
    assert "stale (stored, not acted on)" in out

    code, out, _ = run(
        "events",
        "replay",
        "--since",
        "1h",
        "--type",
        "Anomaly",
        "--to-stream",
        f"{stream_prefix}:again",
    )
    assert code == 0 and out.startswith(f"replayed 1 event(s) to {stream_prefix}:again")


def test_the_documented_redis_cli_line_works(
    redis_url: str, database_url: str, stream_prefix: str
) -> None:
    doc = (ROOT / "docs" / "events.md").read_text()
    line = next(x for x in doc.splitlines() if x.startswith("redis-cli -p 6382 XADD"))
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    argv = shlex.split(line.replace("6382", port).replace("events:myapp", f"{stream_prefix}:myapp"))
    argv[0] = str(binaries.redis_cli())
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode == 0 and re.fullmatch(r"\d+-\d+\n", result.stdout), result

    async def store_and_read() -> asyncpg.Record:
        import redis.asyncio as aioredis

        settings = mesh_settings(redis_url, database_url, stream_prefix)
        client = aioredis.Redis.from_url(redis_url)
        store = await EventStore.connect(database_url)
        try:
            await drain(make_ingestor(settings, client, store))
        finally:
            await client.aclose()
            await store.close()
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow("SELECT * FROM events")
            assert row is not None
            return row
        finally:
            await conn.close()

    row = asyncio.run(store_and_read())
    assert (row["event_type"], row["source"]) == ("ServiceTimeout", "import-service")
    assert json.loads(row["payload"]) == {"duration_s": 30}
    assert row["stream_entry_id"] == result.stdout.strip()


def test_listen_and_module_entry_point_have_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workers.listener", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "--no-incidents" in result.stdout and "--consumer" in result.stdout
