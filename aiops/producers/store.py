"""The producers table: who publishes on which stream, for which services."""

from __future__ import annotations

import asyncpg

from aiops.producers.models import Producer, ProducerError

_COLUMNS = "name, services, stream, created_at, updated_at"


def _producer(row: asyncpg.Record) -> Producer:
    return Producer(
        name=row["name"],
        services=list(row["services"]),
        stream=row["stream"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class ProducerStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, producer: Producer) -> Producer:
        """Insert a new producer; ProducerError if the name is taken."""
        try:
            row = await self._pool.fetchrow(
                f"INSERT INTO producers (name, services, stream) VALUES ($1, $2, $3) "
                f"RETURNING {_COLUMNS}",
                producer.name,
                producer.services,
                producer.stream,
            )
        except asyncpg.UniqueViolationError:
            raise ProducerError(
                f"producer {producer.name} exists already: `aiops producers set "
                f"{producer.name} --services ...` changes its services"
            ) from None
        assert row is not None
        return _producer(row)

    async def set_services(self, name: str, services: list[str]) -> Producer:
        checked = Producer(name=name, services=services)  # the same validation as add
        row = await self._pool.fetchrow(
            f"UPDATE producers SET services = $2, updated_at = now() WHERE name = $1 "
            f"RETURNING {_COLUMNS}",
            name,
            checked.services,
        )
        if row is None:
            raise ProducerError(self._unknown(name))
        return _producer(row)

    async def get(self, name: str) -> Producer | None:
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM producers WHERE name = $1", name)
        return None if row is None else _producer(row)

    async def list(self) -> list[Producer]:
        rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM producers ORDER BY name")
        return [_producer(r) for r in rows]

    async def remove(self, name: str) -> Producer:
        row = await self._pool.fetchrow(
            f"DELETE FROM producers WHERE name = $1 RETURNING {_COLUMNS}", name
        )
        if row is None:
            raise ProducerError(self._unknown(name))
        return _producer(row)

    @staticmethod
    def _unknown(name: str) -> str:
        return f"no producer {name}: `aiops producers list` shows them"
