"""The service registry on real PostgreSQL: discovery and credentials encrypted at rest."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError

from aiops.registry import ServiceDefinition, ServiceRegistry
from aiops.registry.models import ProcessInfo
from aiops.registry.secrets import SecretsError
from aiops.registry.store import UnknownService


def _service(name: str, **extra: object) -> ServiceDefinition:
    return ServiceDefinition.model_validate(
        {"name": name, "endpoint": f"http://127.0.0.1:9/{name}", **extra}
    )


async def test_register_discover_deregister(pool: asyncpg.Pool) -> None:
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    await registry.register(_service("bookmark-api", capabilities=["crud", "search"]))
    await registry.register(_service("search", capabilities=["search"], critical=True))
    await registry.register(_service("importer", capabilities=["import"]))
    found = await registry.discover(capabilities=["search"])
    assert [s.name for s in found] == ["bookmark-api", "search"]
    assert await registry.discover(capabilities=["search"], healthy_only=True) == []
    await registry.record_health("search", True, 3.5)
    healthy = await registry.discover(capabilities=["search"], healthy_only=True)
    assert [s.name for s in healthy] == ["search"]
    assert healthy[0].critical is True and healthy[0].last_latency_ms == 3.5
    # re-registering replaces the definition but keeps health
    await registry.register(_service("search", capabilities=["search", "suggest"]))
    again = await registry.get("search")
    assert again.capabilities == ["search", "suggest"] and again.healthy is True
    assert await registry.deregister("importer") is True
    assert await registry.deregister("importer") is False
    with pytest.raises(UnknownService, match="importer"):
        await registry.get("importer")


async def test_credentials_are_encrypted_at_rest(pool: asyncpg.Pool) -> None:
    key = Fernet.generate_key()
    registry = ServiceRegistry(pool, Fernet(key))
    await registry.register(_service("billing", credentials=SecretStr("tok-very-secret-123")))
    raw = await pool.fetchval("SELECT credentials FROM services WHERE name = 'billing'")
    assert raw is not None and b"tok-very-secret-123" not in raw
    record = await registry.get("billing")
    assert record.credentials is not None
    assert record.credentials.get_secret_value() == "tok-very-secret-123"
    assert "tok-very-secret" not in repr(record)
    with pytest.raises(SecretsError, match="cannot be decrypted"):
        await ServiceRegistry(pool, Fernet(Fernet.generate_key())).get("billing")


def test_definition_validation() -> None:
    with pytest.raises(ValidationError, match="restart_argv"):
        _service("x", restart_argv=[])
    with pytest.raises(ValidationError, match="unknown admin actions"):
        _service("x", admin_endpoints={"drop_database": "/admin/drop"})
    with pytest.raises(ValidationError, match="endpoint"):
        ServiceDefinition(name="x", endpoint="ftp://host")
    with pytest.raises(ValidationError):
        _service("bad name with spaces")


async def test_process_is_recorded_and_cleared_keeping_the_definition(
    pool: asyncpg.Pool,
) -> None:
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    await registry.register(_service("bookmark-api", owner="team", metadata={"tier": "gold"}))
    started = datetime.now(UTC)
    await registry.record_process(
        "bookmark-api", ProcessInfo(pid=4242, create_time=1.5, started_at=started)
    )
    running = await registry.get("bookmark-api")
    assert running.process is not None and running.process.pid == 4242
    # a stopped process: the key goes, the rest of the definition stays
    await registry.record_process("bookmark-api", None)
    stopped = await registry.get("bookmark-api")
    assert stopped.process is None
    assert stopped.owner == "team" and stopped.metadata["tier"] == "gold"
