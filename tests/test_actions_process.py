"""The process adapter never starts a second copy of a service after a crash: a child of an
earlier attempt is found by its pid file or, when the worker died before writing it, by
the action key in its environment."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from cryptography.fernet import Fernet

from aiops.actions.base import ActionContext
from aiops.actions.process import KEY_VARIABLE, ProcessAdapter
from aiops.devstack.processes import spawn
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceDefinition, ServiceRegistry

SLEEP = shutil.which("sleep") or "/bin/sleep"
ARGV = [SLEEP, "300"]


def _copies(name: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("SVC") == name:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        for proc in _copies(name):
            proc.kill()


async def _setup(
    pool: asyncpg.Pool, tmp_path: Path, name: str
) -> tuple[ServiceRegistry, ProcessAdapter]:
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    await registry.register(
        ServiceDefinition(
            name=name,
            endpoint="http://127.0.0.1:9",
            health_check=None,
            restart_argv=ARGV,
            env={"SVC": name},
        )
    )
    return registry, ProcessAdapter(registry, tmp_path / "logs", settle_s=0.1)


def _ctx(name: str, kind: str, key: str) -> ActionContext:
    return ActionContext(
        idempotency_key=key,
        workflow_id=key.split(":")[0],
        step="1",
        action=ActionSpec(action_type=kind, target=name),
    )


async def test_a_restart_adopts_the_child_its_dead_worker_never_wrote_down(
    pool: asyncpg.Pool, tmp_path: Path, cleanup: list[str]
) -> None:
    registry, adapter = await _setup(pool, tmp_path, "svc-a")
    cleanup.append("svc-a")
    # the earlier attempt spawned it and died before the pid file and the registry
    orphan = spawn(ARGV, tmp_path / "orphan.log", env={"SVC": "svc-a", KEY_VARIABLE: "wf:1"})
    ctx = _ctx("svc-a", "restart", "wf:1").model_copy(
        update={"service": await registry.get("svc-a")}
    )
    intent = await adapter.prepare(ctx)
    found = await adapter.reconcile(ctx, intent)
    assert found is not None and found.success and "not repeated" in found.detail
    assert [p.pid for p in _copies("svc-a")] == [orphan.pid]
    recorded = (await registry.get("svc-a")).process
    assert recorded is not None and recorded.pid == orphan.pid
    # applied again all the same (as a retry without intent would), it still adopts
    again = await adapter.apply(ctx, intent)
    assert again.success and [p.pid for p in _copies("svc-a")] == [orphan.pid]


async def test_another_actions_restart_does_restart(
    pool: asyncpg.Pool, tmp_path: Path, cleanup: list[str]
) -> None:
    registry, adapter = await _setup(pool, tmp_path, "svc-b")
    cleanup.append("svc-b")
    first = await adapter.apply(
        _ctx("svc-b", "restart", "wf-1:1").model_copy(
            update={"service": await registry.get("svc-b")}
        ),
        {},
    )
    second = await adapter.apply(
        _ctx("svc-b", "restart", "wf-2:1").model_copy(
            update={"service": await registry.get("svc-b")}
        ),
        {},
    )
    assert first.data["pid"] != second.data["pid"]
    assert [p.pid for p in _copies("svc-b")] == [second.data["pid"]]


async def test_start_finds_the_process_its_pid_file_names(
    pool: asyncpg.Pool, tmp_path: Path, cleanup: list[str]
) -> None:
    registry, adapter = await _setup(pool, tmp_path, "svc-c")
    cleanup.append("svc-c")
    started = await adapter.apply(
        _ctx("svc-c", "start", "wf-1:1").model_copy(
            update={"service": await registry.get("svc-c")}
        ),
        {},
    )
    assert adapter.pid_file("svc-c").exists()
    # the registry lost it (a worker died between the pid file and the database)
    await registry.record_process("svc-c", None)
    again = await adapter.apply(
        _ctx("svc-c", "start", "wf-2:1").model_copy(
            update={"service": await registry.get("svc-c")}
        ),
        {},
    )
    assert "already running" in again.detail
    assert [p.pid for p in _copies("svc-c")] == [started.data["pid"]]
    stopped = await adapter.apply(
        _ctx("svc-c", "stop", "wf-3:1").model_copy(update={"service": await registry.get("svc-c")}),
        {},
    )
    assert stopped.success and _copies("svc-c") == []
    assert not adapter.pid_file("svc-c").exists()


async def test_a_child_whose_pid_file_cannot_be_written_is_stopped(
    pool: asyncpg.Pool, tmp_path: Path, cleanup: list[str]
) -> None:
    name = "pidless"
    cleanup.append(name)
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    await registry.register(
        ServiceDefinition(
            name=name,
            endpoint="http://127.0.0.1:9",
            health_check=None,
            restart_argv=ARGV,
            env={"SVC": name},
        )
    )
    blocked = tmp_path / "run"
    blocked.write_text("a file where the pid files' folder should be")
    adapter = ProcessAdapter(registry, tmp_path / "logs", settle_s=0.1, run_dir=blocked)
    with pytest.raises(OSError):
        await adapter.start(await registry.get(name))
    # nobody could find that child again: it must not run beside the next attempt's
    assert _copies(name) == []
