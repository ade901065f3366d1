from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.fernet import Fernet
from pydantic import SecretStr

from aiops.errors import AiopsError
from aiops.registry.models import ProcessInfo, ServiceDefinition, ServiceRecord
from aiops.registry.secrets import decrypt


class UnknownService(AiopsError):
    pass


class ServiceRegistry:
    def __init__(self, pool: asyncpg.Pool, fernet: Fernet) -> None:
        self._pool = pool
        self._fernet = fernet

    async def register(self, service: ServiceDefinition) -> ServiceRecord:
        """Create or replace a service definition (health and process state are kept)."""
        token = (
            self._fernet.encrypt(service.credentials.get_secret_value().encode())
            if service.credentials is not None
            else None
        )
        row = await self._pool.fetchrow(
            """
            INSERT INTO services (name, endpoint, capabilities, health_check, restart_argv,
                                  admin_endpoints, credentials, critical, owner, metadata)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (name) DO UPDATE SET
                endpoint = EXCLUDED.endpoint, capabilities = EXCLUDED.capabilities,
                health_check = EXCLUDED.health_check, restart_argv = EXCLUDED.restart_argv,
                admin_endpoints = EXCLUDED.admin_endpoints, credentials = EXCLUDED.credentials,
                critical = EXCLUDED.critical, owner = EXCLUDED.owner,
                metadata = services.metadata || EXCLUDED.metadata, updated_at = now()
            RETURNING *
            """,
            service.name,
            service.endpoint,
            service.capabilities,
            service.health_check,
            service.restart_argv,
            service.admin_endpoints,
            token,
            service.critical,
            service.owner,
            {
                **service.metadata,
                "working_dir": service.working_dir,
                "env": service.env,
                "config_keys": {k: v.model_dump() for k, v in service.config_keys.items()},
                "replicas": service.replicas.model_dump() if service.replicas else None,
            },
        )
        assert row is not None  # RETURNING always yields the row
        return self._record(row)

    async def get(self, name: str) -> ServiceRecord:
        row = await self._pool.fetchrow("SELECT * FROM services WHERE name = $1", name)
        if row is None:
            raise UnknownService(f"service {name!r} is not registered")
        return self._record(row)

    async def deregister(self, name: str) -> bool:
        result: str = await self._pool.execute("DELETE FROM services WHERE name = $1", name)
        return result.endswith(" 1")

    async def discover(
        self, capabilities: list[str] | None = None, healthy_only: bool = False
    ) -> list[ServiceRecord]:
        rows = await self._pool.fetch(
            """
            SELECT * FROM services
            WHERE ($1::text[] IS NULL OR capabilities @> $1)
              AND (NOT $2 OR healthy IS TRUE)
            ORDER BY name
            """,
            capabilities,
            healthy_only,
        )
        return [self._record(row) for row in rows]

    async def record_health(self, name: str, healthy: bool, latency_ms: float | None) -> None:
        await self._pool.execute(
            "UPDATE services SET healthy = $2, last_checked_at = now(), last_latency_ms = $3"
            " WHERE name = $1",
            name,
            healthy,
            latency_ms,
        )

    async def record_process(self, name: str, process: ProcessInfo | None) -> None:
        value: dict[str, Any] | None = (
            process.model_dump(mode="json") if process is not None else None
        )
        await self._pool.execute(
            # jsonb_set is strict: a NULL value would null the whole column, so a stopped
            # process is a removed key
            "UPDATE services SET metadata = CASE WHEN $2::jsonb IS NULL"
            " THEN metadata - 'process' ELSE jsonb_set(metadata, '{process}', $2::jsonb) END,"
            " updated_at = now() WHERE name = $1",
            name,
            value,
        )

    def _record(self, row: asyncpg.Record) -> ServiceRecord:
        metadata = dict(row["metadata"] or {})
        process = metadata.pop("process", None)
        working_dir = metadata.pop("working_dir", None)
        env = metadata.pop("env", None) or {}
        config_keys = metadata.pop("config_keys", None) or {}
        replicas = metadata.pop("replicas", None)
        credentials = (
            SecretStr(decrypt(self._fernet, row["credentials"]))
            if row["credentials"] is not None
            else None
        )
        return ServiceRecord(
            name=row["name"],
            endpoint=row["endpoint"],
            capabilities=list(row["capabilities"]),
            health_check=row["health_check"],
            restart_argv=list(row["restart_argv"]) if row["restart_argv"] is not None else None,
            working_dir=working_dir,
            env=env,
            admin_endpoints=row["admin_endpoints"],
            critical=row["critical"],
            owner=row["owner"],
            credentials=credentials,
            config_keys=config_keys,
            replicas=replicas,
            metadata=metadata,
            healthy=row["healthy"],
            last_checked_at=row["last_checked_at"],
            last_latency_ms=row["last_latency_ms"],
            registered_at=row["registered_at"] or datetime.now(UTC),
            process=ProcessInfo.model_validate(process) if process else None,
        )
