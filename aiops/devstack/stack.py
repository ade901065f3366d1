"""`aiops dev up | down | status`: start, record, report and stop the embedded servers."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from aiops.devstack.errors import StackError
from aiops.devstack.ports import port_is_free
from aiops.devstack.processes import ProcessRecord, is_alive, terminate
from aiops.devstack.servers import (
    PostgresServer,
    RedisServer,
    Server,
    TemporalServer,
    wait_ready,
)
from aiops.devstack.temporal_config import DYNAMIC_CONFIG, SQLITE_PRAGMAS

ServiceName = Literal["temporal", "postgres", "redis"]
ALL_SERVICES: tuple[ServiceName, ...] = ("postgres", "redis", "temporal")


class ServiceState(BaseModel):
    name: ServiceName
    url: str
    port: int
    process: ProcessRecord
    ui_url: str | None = None
    running: bool = True


class DevStackState(BaseModel):
    home: str
    namespace: str
    started_at: datetime
    services: dict[str, ServiceState]

    def env(self) -> dict[str, str]:
        """The variables that point every other command at this stack."""
        names = {"temporal": "TEMPORAL_ADDRESS", "postgres": "DATABASE_URL", "redis": "REDIS_URL"}
        env = {names[name]: svc.url for name, svc in self.services.items() if svc.running}
        if "temporal" in self.services:
            env["TEMPORAL_NAMESPACE"] = self.namespace
        return env


class UpResult(BaseModel):
    state: DevStackState
    started: list[str]
    already_running: list[str]


class DevStack:
    def __init__(
        self,
        home: Path,
        *,
        temporal_port: int = 7233,
        temporal_ui_port: int = 8233,
        postgres_port: int = 5434,
        redis_port: int = 6382,
        namespace: str = "default",
        services: Sequence[ServiceName] = ALL_SERVICES,
        fast_unsafe: bool = False,
        temporal_dynamic_config: Mapping[str, int] | None = None,
        temporal_sqlite_pragmas: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home.expanduser().resolve()
        self.namespace = namespace
        self.services = tuple(services)
        self._temporal_ui_port = temporal_ui_port
        self._servers: dict[str, Server] = {
            "postgres": PostgresServer(self.home, postgres_port, fast_unsafe=fast_unsafe),
            "redis": RedisServer(self.home, redis_port, fast_unsafe=fast_unsafe),
            "temporal": TemporalServer(
                self.home,
                temporal_port,
                temporal_ui_port,
                namespace,
                dynamic_config=dict(
                    DYNAMIC_CONFIG if temporal_dynamic_config is None else temporal_dynamic_config
                ),
                sqlite_pragmas=dict(
                    SQLITE_PRAGMAS if temporal_sqlite_pragmas is None else temporal_sqlite_pragmas
                ),
            ),
        }

    @property
    def state_file(self) -> Path:
        return self.home / "dev" / "state.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # two `aiops dev up` at once must not start two copies of a server
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.state_file.parent / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self) -> DevStackState | None:
        """The recorded state with `running` refreshed from the live processes."""
        try:
            state = DevStackState.model_validate_json(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        for svc in state.services.values():
            svc.running = is_alive(svc.process)
        return state

    def _save(self, state: DevStackState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.model_dump_json(indent=2))
        os.replace(tmp, self.state_file)

    def _check_ports(self, server: Server) -> None:
        ports = [(server.port, server.port_flag, server.port_env)]
        if isinstance(server, TemporalServer):
            ports.append((server.ui_port, "--ui-port", "AIOPS_DEV_TEMPORAL_UI_PORT"))
        for port, flag, env in ports:
            if not port_is_free(port):
                raise StackError(
                    f"port {port} for {server.label} is already in use: stop what holds it "
                    f"(`ss -ltnp 'sport = :{port}'`) or choose another port with "
                    f"`aiops dev up {flag} N` (or {env}=N)"
                )

    async def up(self, timeout: float = 120.0) -> UpResult:
        with self._locked():
            previous = self.load()
            services = dict(previous.services) if previous else {}
            if previous and previous.namespace != self.namespace and services.get("temporal"):
                raise StackError(
                    f"the dev stack under {self.home} runs namespace {previous.namespace!r}; "
                    f"run `aiops dev down` before switching to {self.namespace!r}"
                )
            already = [n for n in self.services if n in services and services[n].running]
            to_start = [n for n in self.services if n not in already]
            for name in to_start:
                self._check_ports(self._servers[name])
            started: dict[ServiceName, ProcessRecord] = {}
            try:
                for name in to_start:
                    started[name] = self._servers[name].start()
                await asyncio.gather(
                    *(wait_ready(self._servers[n], started[n], timeout) for n in to_start)
                )
            except BaseException:
                for record in started.values():
                    terminate(record, timeout=10)
                raise
            for name, record in started.items():
                server = self._servers[name]
                services[name] = ServiceState(
                    name=name,
                    url=server.url(),
                    port=server.port,
                    process=record,
                    ui_url=server.ui_url() if isinstance(server, TemporalServer) else None,
                )
            state = DevStackState(
                home=str(self.home),
                namespace=self.namespace,
                started_at=previous.started_at if previous and already else datetime.now(UTC),
                services=services,
            )
            self._save(state)
            return UpResult(state=state, started=list(started), already_running=already)

    def down(self, timeout: float = 30.0, only: Collection[str] | None = None) -> list[str]:
        """Stop exactly the recorded processes (only those named, when `only` is given: what a
        caller started itself); return the names of those that were running."""
        with self._locked():
            state = self.load()
            if state is None:
                return []
            stopped: list[str] = []
            # Temporal first: it holds no data of ours, and stopping it ends client retries.
            for name in ("temporal", "redis", "postgres"):
                svc = state.services.get(name)
                if svc is None or (only is not None and name not in only):
                    continue
                if terminate(svc.process, self._servers[name].stop_signal, timeout):
                    stopped.append(name)
            remaining = {n: v for n, v in state.services.items() if n not in stopped}
            if only is None or not remaining:
                self.state_file.unlink(missing_ok=True)
            else:
                self._save(state.model_copy(update={"services": remaining}))
            return stopped
