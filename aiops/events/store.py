"""The event store: every valid event once, in PostgreSQL's `events` table.

Batches go in by COPY into a per-connection staging table and one INSERT ... ON CONFLICT
(id) DO NOTHING, so a redelivered batch changes nothing. Payloads travel as text and are
cast to jsonb in SQL, so the store works on any pool whatever JSON codecs it registered.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
from pydantic import BaseModel, Field
from pydantic_core import to_json

from aiops.events.envelope import Event

_COLUMNS: Final = (
    "idx",
    "id",
    "ts",
    "event_type",
    "source",
    "payload",
    "correlation_id",
    "causation_id",
    "service",
    "severity",
    "stream",
    "stream_entry_id",
)

_STAGING_DDL: Final = """
CREATE TEMP TABLE IF NOT EXISTS events_staging (
    idx int NOT NULL,
    id uuid NOT NULL,
    ts timestamptz NOT NULL,
    event_type text NOT NULL,
    source text NOT NULL,
    payload text NOT NULL,
    correlation_id uuid,
    causation_id uuid,
    service text,
    severity text,
    stream text,
    stream_entry_id text
) ON COMMIT DELETE ROWS
"""

_MOVE: Final = """
INSERT INTO events (id, ts, event_type, source, payload, correlation_id, causation_id,
                    service, severity, stream, stream_entry_id)
SELECT id, ts, event_type, source, payload::jsonb, correlation_id, causation_id,
       service, severity, stream, stream_entry_id
FROM events_staging
ON CONFLICT (id) DO NOTHING
"""

# Rows the INSERT skipped because another entry stored the id first; a redelivery of the
# same entry is not reported. `same` tells a harmless repeat from a conflicting reuse.
_SKIPPED: Final = """
SELECT s.idx, s.id, e.stream, e.stream_entry_id,
       (e.ts = s.ts AND e.event_type = s.event_type AND e.source = s.source
        AND e.payload = s.payload::jsonb
        AND e.correlation_id IS NOT DISTINCT FROM s.correlation_id
        AND e.causation_id IS NOT DISTINCT FROM s.causation_id
        AND e.service IS NOT DISTINCT FROM s.service
        AND e.severity IS NOT DISTINCT FROM s.severity) AS same
FROM events_staging s JOIN events e ON e.id = s.id
WHERE (e.stream, e.stream_entry_id) IS DISTINCT FROM (s.stream, s.stream_entry_id)
"""

_SELECT: Final = """
SELECT id, ts, event_type, source, payload::text AS payload, correlation_id, causation_id,
       service, severity, stream, stream_entry_id, stored_at
FROM events
"""


@dataclass(frozen=True)
class Located:
    """An event with the stream entry it came from."""

    event: Event
    stream: str | None = None
    entry_id: str | None = None


@dataclass
class StoreResult:
    stored: int = 0
    # same id, same content, from another entry: a publisher's retry; nothing to do
    repeats: list[int] = field(default_factory=list)
    # same id, different content: refused, with the reason
    conflicts: list[tuple[int, str]] = field(default_factory=list)


class StoredEvent(BaseModel):
    event: Event
    stream: str | None = None
    stream_entry_id: str | None = None
    stored_at: datetime


class EventQuery(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    event_types: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    limit: int | None = Field(default=1000, ge=1)


class CausationNode(BaseModel):
    event: StoredEvent
    children: list[CausationNode] = Field(default_factory=list)

    def size(self) -> int:
        return 1 + sum(child.size() for child in self.children)


def _row(idx: int, item: Located) -> tuple[Any, ...]:
    e = item.event
    return (
        idx,
        e.id,
        e.timestamp,
        e.event_type,
        e.source,
        to_json(e.payload).decode(),
        e.correlation_id,
        e.causation_id,
        e.service,
        e.severity.value if e.severity is not None else None,
        item.stream,
        item.entry_id,
    )


def _stored(record: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        event=Event(
            id=record["id"],
            timestamp=record["ts"],
            event_type=record["event_type"],
            source=record["source"],
            payload=json.loads(record["payload"]),
            correlation_id=record["correlation_id"],
            causation_id=record["causation_id"],
            service=record["service"],
            severity=record["severity"],
        ),
        stream=record["stream"],
        stream_entry_id=record["stream_entry_id"],
        stored_at=record["stored_at"],
    )


def _where(query: EventQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if query.since is not None:
        clauses.append(f"ts >= {arg(query.since)}")
    if query.until is not None:
        clauses.append(f"ts < {arg(query.until)}")
    if query.event_types:
        clauses.append(f"event_type = ANY({arg(query.event_types)}::text[])")
    if query.sources:
        clauses.append(f"source = ANY({arg(query.sources)}::text[])")
    if query.correlation_id is not None:
        clauses.append(f"correlation_id = {arg(query.correlation_id)}")
    if query.causation_id is not None:
        clauses.append(f"causation_id = {arg(query.causation_id)}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def _create_staging(conn: asyncpg.Connection) -> None:
    await conn.execute(_STAGING_DDL)


class EventStore:
    def __init__(self, pool: asyncpg.Pool, *, staging_on_connect: bool = False) -> None:
        """staging_on_connect: the pool's init creates the staging table (as connect()
        does), which saves a round trip per batch."""
        self.pool = pool
        self._staging_on_connect = staging_on_connect

    @classmethod
    async def connect(cls, database_url: str, *, max_size: int = 4) -> EventStore:
        pool = await asyncpg.create_pool(
            database_url, min_size=1, max_size=max_size, init=_create_staging
        )
        return cls(pool, staging_on_connect=True)

    async def close(self) -> None:
        await self.pool.close()

    async def store(self, items: Sequence[Located]) -> StoreResult:
        """Store a batch in one transaction; ids already stored are skipped, not errors.

        Raises asyncpg errors as they come: a connection error is the caller's to retry
        (the whole batch again is harmless); a data error names no row, and the caller
        splits the batch to find it.
        """
        result = StoreResult()
        if not items:
            return result
        async with self.pool.acquire() as conn, conn.transaction():
            if not self._staging_on_connect:
                await conn.execute(_STAGING_DDL)
            await conn.copy_records_to_table(
                "events_staging",
                records=[_row(i, item) for i, item in enumerate(items)],
                columns=_COLUMNS,
            )
            status = await conn.execute(_MOVE)
            result.stored = int(status.rsplit(" ", 1)[1])
            if result.stored < len(items):
                for rec in await conn.fetch(_SKIPPED):
                    if rec["same"]:
                        result.repeats.append(rec["idx"])
                    else:
                        result.conflicts.append(
                            (
                                rec["idx"],
                                "duplicate event id with different content: "
                                f"{rec['id']} already stored from {rec['stream']} "
                                f"entry {rec['stream_entry_id']}",
                            )
                        )
        return result

    async def get(self, event_id: uuid.UUID) -> StoredEvent | None:
        async with self.pool.acquire() as conn:
            record = await conn.fetchrow(_SELECT + " WHERE id = $1", event_id)
        return _stored(record) if record is not None else None

    async def query(self, query: EventQuery) -> list[StoredEvent]:
        where, args = _where(query)
        sql = _SELECT + where + " ORDER BY ts, id"
        if query.limit is not None:
            args.append(query.limit)
            sql += f" LIMIT ${len(args)}"
        async with self.pool.acquire() as conn:
            return [_stored(r) for r in await conn.fetch(sql, *args)]

    async def iterate(self, query: EventQuery, *, chunk: int = 1000) -> AsyncIterator[StoredEvent]:
        """Every matching event in time order, through a server-side cursor (for replay)."""
        where, args = _where(query)
        sql = _SELECT + where + " ORDER BY ts, id"
        if query.limit is not None:
            args.append(query.limit)
            sql += f" LIMIT ${len(args)}"
        async with self.pool.acquire() as conn, conn.transaction():
            async for record in conn.cursor(sql, *args, prefetch=chunk):
                yield _stored(record)

    async def count(self, query: EventQuery) -> int:
        where, args = _where(query)
        async with self.pool.acquire() as conn:
            value = await conn.fetchval("SELECT count(*) FROM events" + where, *args)
        return int(value)

    async def prune(self, older_than: timedelta, *, batch: int = 10_000) -> int:
        """Delete stored events whose time is older than `older_than`, in batches (short
        locks, no long transaction); returns how many went. The raw events are the only
        copy of unmasked payloads: retention is how long that copy lives."""
        removed = 0
        while True:
            async with self.pool.acquire() as conn:
                done: str = await conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events"
                    " WHERE ts < now() - make_interval(secs => $1) LIMIT $2)",
                    older_than.total_seconds(),
                    batch,
                )
            count = int(done.rsplit(" ", 1)[-1])
            removed += count
            if count < batch:
                return removed

    async def processed_since(self, seconds: float) -> int:
        """Events stored in the last `seconds`. The ts bound lets the BRIN index skip old
        blocks; an event stored more than a day after its timestamp is not counted."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT count(*) FROM events"
                " WHERE ts >= now() - interval '1 day' - make_interval(secs => $1)"
                " AND stored_at >= now() - make_interval(secs => $1)",
                seconds,
            )
        return int(value)

    async def causation_tree(
        self, event_id: uuid.UUID, *, from_root: bool = True, max_depth: int = 64
    ) -> CausationNode | None:
        """The tree of events caused by an event (causation_id links), from its root cause
        when from_root. Cycles and depth beyond max_depth are cut."""
        async with self.pool.acquire() as conn:
            root = event_id
            if from_root:
                found = await conn.fetchval(
                    """
                    WITH RECURSIVE up(id, causation_id, depth, path) AS (
                        SELECT id, causation_id, 0, ARRAY[id] FROM events WHERE id = $1
                        UNION ALL
                        SELECT e.id, e.causation_id, up.depth + 1, up.path || e.id
                        FROM events e JOIN up ON e.id = up.causation_id
                        WHERE up.depth < $2 AND NOT e.id = ANY(up.path)
                    )
                    SELECT id FROM up ORDER BY depth DESC LIMIT 1
                    """,
                    event_id,
                    max_depth,
                )
                if found is None:
                    return None
                root = found
            records = await conn.fetch(
                """
                WITH RECURSIVE down(id, depth, path) AS (
                    SELECT id, 0, ARRAY[id] FROM events WHERE id = $1
                    UNION ALL
                    SELECT e.id, down.depth + 1, down.path || e.id
                    FROM events e JOIN down ON e.causation_id = down.id
                    WHERE down.depth < $2 AND NOT e.id = ANY(down.path)
                )
                SELECT e.id, e.ts, e.event_type, e.source, e.payload::text AS payload,
                       e.correlation_id, e.causation_id, e.service, e.severity, e.stream,
                       e.stream_entry_id, e.stored_at, down.depth
                FROM down JOIN events e ON e.id = down.id
                ORDER BY down.depth, e.ts, e.id
                """,
                root,
                max_depth,
            )
        if not records:
            return None
        nodes: dict[uuid.UUID, CausationNode] = {}
        top: CausationNode | None = None
        for record in records:
            node = CausationNode(event=_stored(record))
            if record["id"] in nodes:
                continue  # reached twice through a cycle cut at different depths
            nodes[record["id"]] = node
            parent = nodes.get(record["causation_id"]) if record["depth"] > 0 else None
            if parent is not None:
                parent.children.append(node)
            elif top is None:
                top = node
        return top
