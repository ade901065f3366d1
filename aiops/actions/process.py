"""Start, stop and restart a registered local process from its argv (never a shell string)."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiops.actions.base import ActionContext, ActionError, ActionOutcome
from aiops.devstack.processes import ProcessRecord, is_alive, spawn, terminate
from aiops.registry import ServiceRegistry
from aiops.registry.models import ProcessInfo, ServiceRecord

_UNDO = {"stop": "start", "start": "stop"}


class ProcessAdapter:
    name = "process"

    def __init__(self, registry: ServiceRegistry, log_dir: Path, settle_s: float = 0.5) -> None:
        self._registry = registry
        self._log_dir = log_dir
        self._settle_s = settle_s

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

    async def start(self, service: ServiceRecord) -> ProcessInfo:
        if not service.restart_argv:
            raise ActionError(f"service {service.name} has no restart_argv in the registry")
        # only what the service declared, plus PATH: the worker's own environment holds
        # aiops's secrets (AIOPS_SECRET_KEY, DATABASE_URL, tokens), which no service gets
        env = {"PATH": os.environ.get("PATH", os.defpath), **service.env}
        record = await asyncio.to_thread(
            spawn,
            service.restart_argv,
            self._log_dir / f"{service.name}.log",
            env=env,
            cwd=Path(service.working_dir) if service.working_dir else None,
        )
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
        record = self._record(service.process)
        stopped = False
        if record is not None:
            sig = signal.SIGTERM if graceful else signal.SIGKILL
            stopped = await asyncio.to_thread(terminate, record, sig, 15.0)
        await self._registry.record_process(service.name, None)
        return stopped

    async def apply(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        service = self._service(ctx)
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
            info = await self.start(service)
            return ActionOutcome(
                success=True,
                detail=f"started {service.name} (pid {info.pid})",
                data={"pid": info.pid},
                compensable=True,
                compensation_note="undo: stop",
            )
        if kind == "restart":
            await self.stop(service, graceful)
            info = await self.start(service)
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
        current = service.process
        kind = ctx.action.action_type
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
