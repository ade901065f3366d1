"""How each embedded server is started and how we know it answers."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncpg
import redis.asyncio as aioredis

from aiops import search_attributes
from aiops.devstack import binaries
from aiops.devstack.errors import StackError
from aiops.devstack.processes import (
    POSTGRES_SYSTEM_USER,
    ProcessRecord,
    chown_tree,
    ensure_system_user,
    is_alive,
    log_tail,
    make_traversable,
    running_as_root,
    spawn,
)
from aiops.devstack.temporal_config import (
    DYNAMIC_CONFIG,
    SQLITE_PRAGMAS,
    dynamic_config_flags,
    sqlite_pragma_flags,
)

HOST = "127.0.0.1"
DATABASE = "aiops"


class Server(Protocol):
    name: str
    label: str
    port_flag: str
    port_env: str
    port: int
    stop_signal: int

    def url(self) -> str: ...
    def start(self) -> ProcessRecord: ...
    async def ready(self) -> None: ...


async def _wait_ready(server: Server, record: ProcessRecord, timeout: float) -> None:
    """Poll server.ready() until it answers, the process dies or the timeout passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: Exception | None = None
    while loop.time() < deadline:
        if not is_alive(record):
            raise StackError(
                f"{server.label} exited during start-up; last lines of {record.log}:\n"
                f"{log_tail(record.log)}"
            )
        try:
            await server.ready()
            return
        except Exception as error:  # any failure to answer means "not yet"
            last_error = error
        await asyncio.sleep(0.25)
    raise StackError(
        f"{server.label} did not answer on port {server.port} within {timeout:.0f}s "
        f"({last_error}); see {record.log}"
    )


@dataclass
class PostgresServer:
    home: Path
    port: int
    fast_unsafe: bool = False
    name: str = "postgres"
    label: str = "PostgreSQL"
    port_flag: str = "--postgres-port"
    port_env: str = "AIOPS_DEV_POSTGRES_PORT"
    # SIGINT is PostgreSQL's "fast" shutdown: it ends client sessions instead of waiting.
    stop_signal: int = signal.SIGINT

    @property
    def data_dir(self) -> Path:
        return self.home / "postgres" / "data"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def _user(self) -> str | None:
        if not running_as_root():
            return None
        try:
            ensure_system_user(POSTGRES_SYSTEM_USER)
        except (RuntimeError, FileNotFoundError) as error:
            raise StackError(
                f"PostgreSQL will not run as root and {error}; run aiops as a normal user"
            ) from None
        return POSTGRES_SYSTEM_USER

    def _initdb(self, user: str | None) -> None:
        bin_dir = binaries.postgres_bin_dir()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if user:
            make_traversable(bin_dir)
            make_traversable(self.data_dir.parent)
            chown_tree(self.data_dir.parent, user)
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made cluster from an interrupted initdb
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            user=user,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"initdb failed for {self.data_dir}: {result.stderr.strip()}")

    def start(self) -> ProcessRecord:
        user = self._user()
        self._initdb(user)
        argv = [
            str(binaries.postgres_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            HOST,
            "-k",
            "",  # TCP only: socket paths under deep temp dirs exceed the 107-byte limit
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
        ]
        if self.fast_unsafe:
            # tests only: durability traded for speed; a crash loses a throwaway database
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        # the log is opened by this process and inherited, so the postgres user needs no access
        return spawn(argv, self.home / "logs" / "postgres.log", user=user)

    async def ready(self) -> None:
        conn = await asyncpg.connect(self.url("postgres"), timeout=2)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
            if not exists:
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.url(), timeout=2)
        try:
            # so `psql $DATABASE_URL` sees pgvector right after `aiops dev up`, before migrate
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            await conn.close()


@dataclass
class RedisServer:
    home: Path
    port: int
    fast_unsafe: bool = False
    name: str = "redis"
    label: str = "Redis"
    port_flag: str = "--redis-port"
    port_env: str = "AIOPS_DEV_REDIS_PORT"
    stop_signal: int = signal.SIGTERM

    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> ProcessRecord:
        data = self.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        # `aiops producers add` saves its ACL users here (ACL SAVE); empty, the default
        # user stays as it is
        aclfile = data / "users.acl"
        aclfile.touch(exist_ok=True)
        argv = [
            str(binaries.redis_server()),
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--dir",
            str(data),
            "--daemonize",
            "no",
            "--save",
            "",
            "--aclfile",
            str(aclfile),
        ]
        if self.fast_unsafe:
            argv += ["--appendonly", "no"]
        else:
            # the AOF is what keeps unprocessed events across a restart
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        return spawn(argv, self.home / "logs" / "redis.log")

    async def ready(self) -> None:
        client = aioredis.Redis.from_url(self.url(), socket_connect_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()


@dataclass
class TemporalServer:
    home: Path
    port: int
    ui_port: int
    namespace: str = "default"
    name: str = "temporal"
    label: str = "Temporal"
    port_flag: str = "--temporal-port"
    port_env: str = "AIOPS_DEV_TEMPORAL_PORT"
    stop_signal: int = signal.SIGTERM
    # Temporal's own defaults when empty (bench/incidents.py --temporal-defaults)
    dynamic_config: Mapping[str, int] = field(default_factory=lambda: dict(DYNAMIC_CONFIG))
    # SQLite's own (a rollback journal) when empty
    sqlite_pragmas: Mapping[str, str] = field(default_factory=lambda: dict(SQLITE_PRAGMAS))

    def url(self) -> str:
        return f"{HOST}:{self.port}"

    def ui_url(self) -> str:
        return f"http://{HOST}:{self.ui_port}"

    def start(self) -> ProcessRecord:
        data = self.home / "temporal"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binaries.temporal_cli()),
            "server",
            "start-dev",
            "--ip",
            HOST,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(data / "temporal.db"),
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
            *search_attributes.cli_flags(),
            *dynamic_config_flags(self.dynamic_config),
            *sqlite_pragma_flags(self.sqlite_pragmas),
        ]
        if self.namespace != "default":
            argv += ["--namespace", self.namespace]
        return spawn(argv, self.home / "logs" / "temporal.log")

    async def ready(self) -> None:
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
        from temporalio.client import Client

        client = await Client.connect(self.url(), namespace=self.namespace)
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=self.namespace)
        )


async def wait_ready(server: Server, record: ProcessRecord, timeout: float = 90.0) -> None:
    await _wait_ready(server, record, timeout)
