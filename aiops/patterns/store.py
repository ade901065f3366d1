"""The pattern library in PostgreSQL: knowledge_nodes rows of type `pattern`.

A pattern's identity is what it matches and does (rules, event types, service, template,
actions, type, severity), hashed into the row's fingerprint: adding the same pattern twice
is one row, so `aiops patterns load` can be run again safely, and it never brings back a
pattern that was retired (evolution retired it for a reason).

Every query casts JSON through text, so the library works on any asyncpg pool whatever
codecs it registered (the listener shares the event store's pool, which registers none).

`pattern_library_version` (schema/006) is bumped by a trigger in the same transaction as
any change to what a pattern matches or does; readers poll it to reload a compiled
matcher only when needed. A snapshot reads the version and the active patterns in one
repeatable-read transaction, so the version a matcher carries is the one it was built from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ValidationError

from aiops.patterns.errors import PatternNotFound
from aiops.patterns.matcher import PatternMatcher, compile_pattern
from aiops.patterns.models import Pattern, PatternStatus

log = logging.getLogger(__name__)

# the Pattern fields that make two patterns the same pattern
IDENTITY_FIELDS = (
    "pattern_type",
    "matching_rules",
    "actions",
    "event_types",
    "service",
    "template",
    "severity",
)


class StoredPattern(BaseModel):
    id: str
    pattern: Pattern
    created_at: datetime
    updated_at: datetime


class AddResult(BaseModel):
    id: str
    created: bool
    status: PatternStatus


class Snapshot(BaseModel):
    version: int
    patterns: list[StoredPattern]


def pattern_fingerprint(pattern: Pattern) -> str:
    identity = pattern.model_dump(mode="json", include=set(IDENTITY_FIELDS))
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return "pattern:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_id(pattern_id: str) -> uuid.UUID:
    """A pattern id as a UUID; anything else raises PatternNotFound."""
    try:
        return uuid.UUID(str(pattern_id))
    except ValueError:
        raise PatternNotFound(f"no pattern {pattern_id!r}: pattern ids are UUIDs") from None


def _stored(row: Any) -> StoredPattern | None:
    try:
        pattern = Pattern.model_validate_json(row["data"])
    except ValidationError as error:
        # written by hand or by an older miner: leave it out rather than fail every load
        log.warning("pattern %s is not a valid Pattern, skipped: %s", row["id"], error)
        return None
    return StoredPattern(
        id=str(row["id"]),
        pattern=pattern,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_COLUMNS = "id, data::text AS data, created_at, updated_at"


class PatternLibrary:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, pattern: Pattern, *, conn: Any = None) -> AddResult:
        """Store a pattern (compiled first: an invalid one raises PatternError and is not
        stored). An identical pattern already stored is returned as it is."""
        compile_pattern("new", pattern)
        db = conn or self.pool
        row = await db.fetchrow(
            """
            WITH inserted AS (
                INSERT INTO knowledge_nodes (node_type, fingerprint, data)
                VALUES ('pattern', $1, $2::text::jsonb)
                ON CONFLICT (node_type, fingerprint) DO NOTHING
                RETURNING id, data->>'status' AS status
            )
            SELECT id, status, true AS created FROM inserted
            UNION ALL
            SELECT id, data->>'status', false FROM knowledge_nodes
            WHERE node_type = 'pattern' AND fingerprint = $1
              AND NOT EXISTS (SELECT 1 FROM inserted)
            """,
            pattern_fingerprint(pattern),
            pattern.model_dump_json(),
        )
        if row is None:  # inserted concurrently by another transaction not yet visible
            return await self.add(pattern, conn=conn)
        return AddResult(
            id=str(row["id"]),
            created=row["created"],
            status=PatternStatus(row["status"] or PatternStatus.ACTIVE),
        )

    async def add_many(self, patterns: Iterable[Pattern]) -> list[AddResult]:
        """add() each, in one transaction: a file loads whole or not at all."""
        items = list(patterns)
        for pattern in items:
            compile_pattern("new", pattern)
        async with self.pool.acquire() as conn, conn.transaction():
            return [await self.add(pattern, conn=conn) for pattern in items]

    async def get(self, pattern_id: str, *, conn: Any = None) -> StoredPattern:
        row = await (conn or self.pool).fetchrow(
            f"SELECT {_COLUMNS} FROM knowledge_nodes WHERE id = $1 AND node_type = 'pattern'",
            parse_id(pattern_id),
        )
        stored = _stored(row) if row is not None else None
        if stored is None:
            raise PatternNotFound(f"no pattern {pattern_id}")
        return stored

    async def list(
        self, status: PatternStatus | None = PatternStatus.ACTIVE, *, conn: Any = None
    ) -> list[StoredPattern]:
        """Patterns with that status (None: all), oldest first."""
        rows = await (conn or self.pool).fetch(
            f"""
            SELECT {_COLUMNS} FROM knowledge_nodes
            WHERE node_type = 'pattern'
              AND ($1::text IS NULL OR coalesce(data->>'status', 'active') = $1)
            ORDER BY created_at, id
            """,
            None if status is None else status.value,
        )
        return [s for s in map(_stored, rows) if s is not None]

    async def retire(self, pattern_id: str, reason: str, *, conn: Any = None) -> bool:
        """Retire an active pattern; False when it was retired already."""
        db = conn or self.pool
        retired = await db.fetchval(
            """
            UPDATE knowledge_nodes SET
                data = data || jsonb_build_object('status', 'retired', 'retired_reason',
                                                  $2::text, 'last_updated', now()),
                updated_at = now()
            WHERE id = $1 AND node_type = 'pattern'
              AND coalesce(data->>'status', 'active') = 'active'
            RETURNING id
            """,
            parse_id(pattern_id),
            reason,
        )
        if retired is None:
            await self.get(pattern_id, conn=db)  # raises PatternNotFound when there is none
            return False
        return True

    async def reactivate(self, pattern_id: str, *, conn: Any = None) -> None:
        await (conn or self.pool).execute(
            """
            UPDATE knowledge_nodes SET
                data = data || jsonb_build_object('status', 'active', 'retired_reason', null),
                updated_at = now()
            WHERE id = $1 AND node_type = 'pattern'
            """,
            parse_id(pattern_id),
        )

    async def version(self) -> int:
        value: int = await self.pool.fetchval("SELECT version FROM pattern_library_version")
        return value

    async def snapshot(self) -> Snapshot:
        """The version and the active patterns, read together."""
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            version = await conn.fetchval("SELECT version FROM pattern_library_version")
            patterns = await self.list(PatternStatus.ACTIVE, conn=conn)
        return Snapshot(version=int(version), patterns=patterns)

    async def load_matcher(self) -> tuple[int, PatternMatcher]:
        """The active patterns compiled, with the version they were read at. A pattern
        that does not compile is left out with a warning (one bad row must not stop
        detection)."""
        snapshot = await self.snapshot()
        matcher = PatternMatcher(((s.id, s.pattern) for s in snapshot.patterns), skip_invalid=True)
        for error in matcher.errors:
            log.warning("pattern left out of the matcher: %s", error)
        return snapshot.version, matcher

    async def add_occurrences(self, counts: Mapping[str, int]) -> None:
        """Add how often each pattern matched (the seed's `occurrences`)."""
        if not counts:
            return
        ids: Sequence[uuid.UUID] = [uuid.UUID(i) for i in counts]
        await self.pool.execute(
            """
            UPDATE knowledge_nodes n SET data = n.data || jsonb_build_object(
                'occurrences', coalesce((n.data->>'occurrences')::bigint, 0) + c.n)
            FROM unnest($1::uuid[], $2::bigint[]) AS c(id, n)
            WHERE n.id = c.id AND n.node_type = 'pattern'
            """,
            ids,
            list(counts.values()),
        )
