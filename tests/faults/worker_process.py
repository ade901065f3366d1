"""A real `aiops worker` subprocess for fault tests: started on a test's servers, killed -9.

Also the service processes the process adapter spawns: each carries the service's name in
its environment (AIOPS_FAULT_SERVICE), so a test counts exactly the copies of one service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil

from aiops.config import ENV_NAMES

AIOPS = str(Path(sys.executable).parent / "aiops")
MARKER = "AIOPS_FAULT_SERVICE"


def worker_env(
    *,
    database_url: str,
    temporal_address: str,
    queue: str,
    secret_key: str,
    home: Path,
    redis_url: str = "redis://127.0.0.1:1/0",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The worker's environment: this test's servers, nothing of the caller's AIOPS_*."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("AIOPS_") and k not in ENV_NAMES
    }
    return {
        **base,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "AIOPS_TASK_QUEUE": queue,
        "AIOPS_SECRET_KEY": secret_key,
        "AIOPS_HOME": str(home),
        "AIOPS_TRACING": "off",
        "AIOPS_SIMULATED_ADAPTER": "1",
        **(extra or {}),
    }


def start_worker(env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([AIOPS, "worker"], env=dict(env), stdout=out, stderr=out)


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            kill_9(proc)


def copies_of(service: str) -> list[psutil.Process]:
    """The live processes started for `service` (by the marker in their environment)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARKER) == service:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_copies(*services: str) -> None:
    wanted = set(services)
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) in wanted:
                proc.kill()
        except psutil.Error:
            continue
