"""Start, stop and restart a registered local process from its argv (never a shell string).

A worker killed at any point of a restart must not leave two copies of the service when
the retry runs. So, per service: the whole stop-and-start holds an flock under the run
directory (two workers on this host take turns); the child carries the action's key in
its environment (AIOPS_ACTION_KEY) and its pid, start time and key go to a pid file the
moment it exists; and before spawning, a live process of the service's own command
started for this key (pid file, else found by its environment, for a worker that died
between spawn and pid file) is adopted instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psutil

from aiops.actions.base import ActionContext, ActionError, ActionOutcome
from aiops.devstack.processes import ProcessRecord, is_alive, spawn, terminate
from aiops.registry import ServiceRegistry
from aiops.registry.models import ProcessInfo, ServiceRecord

_UNDO = {"stop": "start", "start": "stop"}
KEY_VARIABLE = "AIOPS_ACTION_KEY"
SERVICE_VARIABLE = "AIOPS_SERVICE"


def _pid_of_key(argv: list[str], key: str) -> ProcessRecord | None:
    """A live process running `argv` that was started for action `key`, if any."""
    for proc in psutil.process_iter():
        try:
            if proc.cmdline() != argv or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(KEY_VARIABLE) == key:
                return ProcessRecord(
                    pid=proc.pid, create_time=proc.create_time(), argv=argv, log=""
                )
        except psutil.Error:
            continue
    return None


def _lock_file(path: Path) -> IO[str]:
    return open(path, "a")  # closed by ProcessAdapter._locked


def _runs(record: ProcessRecord, argv: list[str]) -> bool:
    """Alive, the same process (start time), and running the service's command."""
    if not is_alive(record):
        return False
    try:
        return psutil.Process(record.pid).cmdline() == argv
    except psutil.Error:
        return False


class ProcessAdapter:
    name = "process"

    def __init__(
        self,
        registry: ServiceRegistry,
        log_dir: Path,
        settle_s: float = 0.5,
        run_dir: Path | None = None,
    ) -> None:
        """run_dir: where the per-service lock and pid files live (default: log_dir/run)."""
        self._registry = registry
        self._log_dir = log_dir
        self._settle_s = settle_s
        self._run_dir = run_dir or log_dir / "run"

    def pid_file(self, service: str) -> Path:
        return self._run_dir / f"{service}.pid"

    @contextlib.asynccontextmanager
    async def _locked(self, service: str) -> AsyncIterator[None]:
        """The service's flock, for the whole stop-and-start; the kernel drops it when the
        worker dies, so a killed worker never leaves it taken."""
        self._run_dir.mkdir(parents=True, exist_ok=True)
        handle = _lock_file(self._run_dir / f"{service}.lock")
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.05)  # polled, so a cancelled activity stops waiting
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()

    def _write_pid_file(self, service: str, record: ProcessRecord, key: str) -> None:
        path = self.pid_file(service)
        # start() outside an action (the demo's own start) takes no lock, which made it
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "pid": record.pid,
                    "create_time": record.create_time,
                    "argv": record.argv,
                    "key": key,
                }
            )
        )
        os.replace(tmp, path)

    def _from_pid_file(self, service: ServiceRecord) -> tuple[ProcessRecord, str] | None:
        """The process the pid file names, when it still runs the service's command."""
        try:
            data = json.loads(self.pid_file(service.name).read_text())
            record = ProcessRecord(
                pid=int(data["pid"]),
                create_time=float(data["create_time"]),
                argv=list(data["argv"]),
                log="",
            )
            key = str(data.get("key") or "")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not service.restart_argv or not _runs(record, service.restart_argv):
            return None
        return record, key

    async def _started_for(self, service: ServiceRecord, key: str) -> ProcessRecord | None:
        """The live process an earlier attempt of this action started, if any."""
        if not service.restart_argv:
            return None
        found = self._from_pid_file(service)
        if found is not None and found[1] == key:
            return found[0]
        return await asyncio.to_thread(_pid_of_key, service.restart_argv, key)

    async def _adopt(self, service: ServiceRecord, record: ProcessRecord) -> ProcessInfo:
        info = ProcessInfo(
            pid=record.pid, create_time=record.create_time, started_at=datetime.now(UTC)
        )
        current = service.process
        if current is None or current.pid != record.pid:
            await self._registry.record_process(service.name, info)
        return current if current is not None and current.pid == record.pid else info

    @staticmethod
    def _service(ctx: ActionContext) -> ServiceRecord:
        if ctx.service is None:
            raise ActionError(f"{ctx.action.action_type} needs a registered service")
        return ctx.service

    @staticmethod
    def _record(info: ProcessInfo | None) -> ProcessRecord | None:
        if info is None:
            return None
        return ProcessRecord(pid=info.pid, create_time=info.create_time, argv=[], log="")

    async def prepare(self, ctx: ActionContext) -> dict[str, Any]:
        process = self._service(ctx).process
        return {"previous": process.model_dump(mode="json") if process else None}

    async def start(self, service: ServiceRecord, key: str = "") -> ProcessInfo:
        """Start the service for action `key`; call it holding the service's lock."""
        if not service.restart_argv:
            raise ActionError(f"service {service.name} has no restart_argv in the registry")
        earlier = await self._started_for(service, key) if key else None
        if earlier is not None:
            return await self._adopt(service, earlier)
        # only what the service declared, plus PATH and who started it: the worker's own
        # environment holds aiops's secrets (AIOPS_SECRET_KEY, DATABASE_URL, tokens),
        # which no service gets
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            **service.env,
            SERVICE_VARIABLE: service.name,
            KEY_VARIABLE: key,
        }
        record = await asyncio.to_thread(
            spawn,
            service.restart_argv,
            self._log_dir / f"{service.name}.log",
            env=env,
            cwd=Path(service.working_dir) if service.working_dir else None,
        )
        try:
            self._write_pid_file(service.name, record, key)
        except OSError:
            # a child nobody can find again would run beside the next attempt's
            await asyncio.to_thread(terminate, record)
            raise
        await asyncio.sleep(self._settle_s)
        if not is_alive(record):
            raise ActionError(
                f"{service.name} exited right after start; see {self._log_dir / service.name}.log"
            )
        info = ProcessInfo(
            pid=record.pid, create_time=record.create_time, started_at=datetime.now(UTC)
        )
        await self._registry.record_process(service.name, info)
        return info

    async def stop(self, service: ServiceRecord, graceful: bool = True) -> bool:
        """Stop the recorded process and the one the pid file names (a start whose worker
        died before recording it); call it holding the service's lock."""
        records = [r for r in (self._record(service.process),) if r is not None]
        found = self._from_pid_file(service)
        if found is not None and all(r.pid != found[0].pid for r in records):
            records.append(found[0])
        stopped = False
        sig = signal.SIGTERM if graceful else signal.SIGKILL
        for record in records:
            stopped = await asyncio.to_thread(terminate, record, sig, 15.0) or stopped
        await self._registry.record_process(service.name, None)
        self.pid_file(service.name).unlink(missing_ok=True)
        return stopped

    async def apply(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        async with self._locked(self._service(ctx).name):
            # what another worker did while this one waited for the lock counts
            service = await self._registry.get(self._service(ctx).name)
            return await self._apply(ctx.model_copy(update={"service": service}))

    async def _apply(self, ctx: ActionContext) -> ActionOutcome:
        service = self._service(ctx)
        key = ctx.idempotency_key
        kind = ctx.action.action_type
        graceful = bool(ctx.action.parameters.get("graceful", True))
        if kind == "stop":
            was = await self.stop(service, graceful)
            detail = f"stopped {service.name}" if was else f"{service.name} was not running"
            return ActionOutcome(
                success=True, detail=detail, compensable=True, compensation_note="undo: start"
            )
        if kind == "start":
            current = self._record(service.process)
            if current is not None and is_alive(current):
                return ActionOutcome(success=True, detail=f"{service.name} already running")
            found = self._from_pid_file(service)
            if found is not None and found[1] != key:
                info = await self._adopt(service, found[0])
                return ActionOutcome(
                    success=True, detail=f"{service.name} already running (pid {info.pid})"
                )
            info = await self.start(service, key)
            return ActionOutcome(
                success=True,
                detail=f"started {service.name} (pid {info.pid})",
                data={"pid": info.pid},
                compensable=True,
                compensation_note="undo: stop",
            )
        if kind == "restart":
            # an earlier attempt of this very restart whose worker died after the spawn
            # already restarted it: stopping that process would restart it twice
            earlier = await self._started_for(service, key)
            if earlier is not None:
                info = await self._adopt(service, earlier)
            else:
                await self.stop(service, graceful)
                info = await self.start(service, key)
            return ActionOutcome(
                success=True,
                detail=f"restarted {service.name} (pid {info.pid})",
                data={"pid": info.pid},
                compensable=False,
                compensation_note="a restart cannot be undone; nothing to roll back",
            )
        raise ActionError(f"the process adapter does not {kind}")

    async def reconcile(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome | None:
        # did the interrupted start/restart happen? a live process other than the one we
        # saw before acting says it did
        service = await self._registry.get(self._service(ctx).name)
        previous = intent.get("previous") or {}
        kind = ctx.action.action_type
        if kind in ("start", "restart"):
            # started, but the worker died before recording it: the process says so itself
            async with self._locked(service.name):
                earlier = await self._started_for(service, ctx.idempotency_key)
                if earlier is not None:
                    await self._adopt(service, earlier)
                    service = await self._registry.get(service.name)
        current = service.process
        record = self._record(current)
        started_anew = (
            kind in ("start", "restart")
            and current is not None
            and record is not None
            and current.pid != previous.get("pid")
            and is_alive(record)
        )
        if started_anew and current is not None:
            return ActionOutcome(
                success=True,
                detail=f"{kind} of {service.name} had completed (pid {current.pid}) before "
                "the worker stopped; not repeated",
                data={"pid": current.pid},
                compensable=kind == "start",
                compensation_note="undo: stop"
                if kind == "start"
                else "a restart cannot be undone; nothing to roll back",
            )
        if ctx.action.action_type == "stop" and current is None and previous:
            return ActionOutcome(success=True, detail=f"{service.name} had been stopped")
        return None

    async def compensate(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        undo = _UNDO.get(ctx.action.action_type)
        if undo is None:
            return ActionOutcome(
                success=True, detail=f"{ctx.action.action_type} has no compensation"
            )
        service = await self._registry.get(self._service(ctx).name)
        undo_ctx = ctx.model_copy(
            update={
                "service": service,
                "action": ctx.action.model_copy(update={"action_type": undo}),
            }
        )
        return await self.apply(undo_ctx, intent)
