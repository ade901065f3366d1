"""`aiops migrate` with AIOPS_APP_DATABASE_URL: the services' role, created and granted by
the owner, can run the services' writes but cannot touch the audit log's history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from typer.testing import CliRunner, Result

from aiops.audit import AuditEntry, AuditLog, derive_audit_keys
from aiops.config import get_settings
from aiops.db.pool import create_pool
from aiops.events.envelope import Event
from aiops.events.store import EventStore, Located
from workers import cli


def _as(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))


@pytest_asyncio.fixture
async def role(database_url: str) -> AsyncIterator[str]:
    """A role name of this test's own; roles are cluster-wide, so it is dropped after."""
    name = f"app_{uuid.uuid4().hex[:10]}"
    yield name
    owner = await asyncpg.connect(database_url)
    try:
        if await owner.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
            await owner.execute(f"DROP OWNED BY {name}")
            await owner.execute(f"DROP ROLE {name}")
    finally:
        await owner.close()


async def _migrate(database_url: str, app_url: str, monkeypatch: pytest.MonkeyPatch) -> Result:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AIOPS_APP_DATABASE_URL", app_url)
    get_settings.cache_clear()
    cli._register()
    try:
        return await asyncio.to_thread(CliRunner().invoke, cli.app, ["migrate"])
    finally:
        get_settings.cache_clear()


async def _password_hash(database_url: str, role: str) -> str | None:
    owner = await asyncpg.connect(database_url)
    try:
        found: str | None = await owner.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role
        )
        return found
    finally:
        await owner.close()


async def test_migrate_creates_the_app_role_the_services_run_as(
    database_url: str, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_url = _as(database_url, role, "first-secret")
    result = await _migrate(database_url, app_url, monkeypatch)
    assert result.exit_code == 0, result.output
    assert f"app role {role}: created, password set" in result.output
    assert (await _password_hash(database_url, role) or "").startswith("SCRAM-SHA-256$")

    # the services' writes work as the app role
    store = await EventStore.connect(app_url)
    try:
        event = Event(event_type="MetricReport", source="checkout", payload={"cpu": 0.4})
        assert (await store.store([Located(event, "events:test", "1-0")])).stored == 1
    finally:
        await store.close()
    pool = await create_pool(app_url, max_size=2)
    try:
        log = AuditLog(pool, derive_audit_keys(b"app-role"))
        await log.append(
            AuditEntry(
                actor="aiops-worker",
                action="cache_clear",
                target="checkout",
                decision="allowed",
                details={"at": datetime.now(UTC).isoformat()},
            )
        )
        assert (await log.verify()).ok
    finally:
        await pool.close()

    # and its history cannot be rewritten by them
    conn = await asyncpg.connect(app_url)
    try:
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role)
        for statement in (
            "UPDATE audit_log SET decision = 'denied'",
            "DELETE FROM audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_second_migrate_keeps_the_role_and_rotates_its_password(
    database_url: str, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    once = await _migrate(database_url, _as(database_url, role, "one"), monkeypatch)
    assert once.exit_code == 0, once.output
    first = await _password_hash(database_url, role)
    again = await _migrate(database_url, _as(database_url, role, "two"), monkeypatch)
    assert again.exit_code == 0, again.output
    assert f"app role {role}: exists, password set" in again.output
    second = await _password_hash(database_url, role)
    assert first and second and first != second


async def test_the_owner_is_refused_as_the_services_role(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = urlsplit(database_url).username
    assert owner
    result = await _migrate(database_url, _as(database_url, owner, "x"), monkeypatch)
    assert result.exit_code == 1
    assert "must run as a role that does not own the schema" in result.output


async def test_a_superuser_is_refused_as_the_services_role(
    database_url: str, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    finally:
        await owner.close()
    result = await _migrate(database_url, _as(database_url, role, "x"), monkeypatch)
    assert result.exit_code == 1
    assert "is a superuser" in result.output
