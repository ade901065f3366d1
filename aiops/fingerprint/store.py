"""The fingerprinter's templates shared in PostgreSQL (schema/018), with a local cache.

Each process keeps every template in memory and answers a line whose shape it has seen
without leaving memory. A shape it has not seen is placed under one lock held across all
processes, after taking every template change the others have made
(``fingerprint_templates.changed``): whether another process has already placed that shape
(``fingerprint_shapes``), and otherwise where the miner puts it. Decisions are therefore
taken one at a time with the same knowledge everywhere, as if by one miner reading the
interleaved stream: a fingerprint does not depend on which listener saw a line first, and a
restarted listener reads the same ids back. A template merged into an older one keeps its
row with ``merged_into`` set, so a fingerprint handed out before the merge still resolves.

The miner is synchronous (the listener calls it while coalescing a batch), so the store
runs its own connection on a private event loop in a thread, and a new shape waits for one
short transaction (a few milliseconds). A line of a known shape costs nothing more, and a
process starting loads every template and every shape placed so far, so a restarted
listener meets its known shapes without a round trip. When PostgreSQL cannot be reached
the shape is placed locally (logged), and the store is left alone for 30 s before the next
try, so an outage does not cost a timeout per new shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from aiops.fingerprint.tokens import Token

if TYPE_CHECKING:
    from aiops.fingerprint.fingerprinter import Fingerprinter, Key, Scope

log = logging.getLogger("aiops.fingerprint")

T = TypeVar("T")

# one lock for every scope: decisions are rare (new shapes only), and one order of all
# changes lets each process follow them with a single high-water mark
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"aiops.fingerprint.templates").digest()[:8], "big") >> 1


def shape_digest(key: Key) -> str:
    return hashlib.sha256("\x1f".join(key).encode()).hexdigest()


class SharedTemplates:
    """Templates shared through PostgreSQL; give it to ``Fingerprinter(shared=...)``."""

    def __init__(
        self, database_url: str, *, refresh_s: float = 5.0, timeout_s: float = 10.0
    ) -> None:
        self._url = database_url
        self.refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._seen = 0  # the highest change taken from the table
        # every shape placed before this process started, by digest: a restarted listener
        # answers the shapes it has met before without a round trip
        self._placed: dict[tuple[str, str, str], str] = {}
        self._refreshed = 0.0
        # after a failure the store is left alone this long: a stalled database must not
        # stall every new shape by a timeout
        self._retry_s = max(refresh_s, 30.0)
        self._down_until = 0.0
        self._connection: asyncpg.Connection | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="aiops-fingerprint-store", daemon=True
        )
        self._thread.start()

    # --- what the fingerprinter calls -----------------------------------------------

    def attach(self, fingerprinter: Fingerprinter) -> None:
        """Load every template and shape so far (a restarted process gives the same ids)."""
        self._guarded(fingerprinter, self._load(fingerprinter), None)

    def due(self) -> bool:
        return time.monotonic() - self._refreshed >= self.refresh_s

    def refresh(self, fingerprinter: Fingerprinter) -> None:
        """Take the others' changes (generalised and merged templates) without a lock."""
        self._guarded(fingerprinter, self._pull_only(fingerprinter), None)

    def learn(self, fingerprinter: Fingerprinter, scope: Scope, key: Key, message: str) -> int:
        """Place a shape this process has not seen, the same way every process would."""
        placed = self._placed.pop((scope[0], scope[1], shape_digest(key)), None)
        if placed is not None:
            known = fingerprinter.index_of(placed)
            if known is not None:
                return known
        index = self._guarded(fingerprinter, self._learn(fingerprinter, scope, key, message), -1)
        if index < 0:
            # degraded: placed locally, pushed with the next decision that reaches the table
            return fingerprinter.learn(scope, key, message)
        return index

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        if self._connection is not None:
            try:
                self._run(self._connection.close(timeout=self._timeout_s))
            except Exception:  # closing a broken connection: nothing left to do
                log.debug("closing the template store's connection failed", exc_info=True)
            self._connection = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout_s)
        self._loop.close()

    # --- internals --------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self._timeout_s)
        except TimeoutError:
            # it must not go on changing the templates while the caller places the line
            future.cancel()
            raise

    def _guarded(
        self, fingerprinter: Fingerprinter, coroutine: Coroutine[Any, Any, T], fallback: T
    ) -> T:
        if time.monotonic() < self._down_until:
            coroutine.close()
            return fallback
        try:
            return self._run(coroutine)
        except Exception:
            self._down_until = time.monotonic() + self._retry_s
            log.warning(
                "template store unreachable: fingerprints stay local for %.0f s",
                self._retry_s,
                exc_info=True,
            )
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.terminate()
            return fallback

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(self._url, timeout=self._timeout_s)
        return self._connection

    async def _pull_only(self, fingerprinter: Fingerprinter) -> None:
        await self._pull(await self._connect(), fingerprinter)

    async def _load(self, fingerprinter: Fingerprinter) -> None:
        connection = await self._connect()
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            await self._pull(connection, fingerprinter)
            rows = await connection.fetch(
                "SELECT service, category, shape, fingerprint FROM fingerprint_shapes"
            )
        self._placed = {
            (row["service"], row["category"], row["shape"]): row["fingerprint"] for row in rows
        }

    async def _learn(
        self, fingerprinter: Fingerprinter, scope: Scope, key: Key, message: str
    ) -> int:
        connection = await self._connect()
        digest = shape_digest(key)
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await self._pull(connection, fingerprinter)
            placed = await connection.fetchval(
                "SELECT fingerprint FROM fingerprint_shapes"
                " WHERE service = $1 AND category = $2 AND shape = $3",
                scope[0],
                scope[1],
                digest,
            )
            index = None if placed is None else fingerprinter.index_of(placed)
            if index is None:
                index = fingerprinter.learn(scope, key, message)
            # nobody else writes while the lock is held: our changes are the newest
            self._seen = max(self._seen, await self._push(connection, fingerprinter))
            if placed is None:
                await connection.execute(
                    "INSERT INTO fingerprint_shapes (service, category, shape, fingerprint)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    scope[0],
                    scope[1],
                    digest,
                    fingerprinter.fingerprint_of(index),
                )
        return index

    async def _pull(self, connection: asyncpg.Connection, fingerprinter: Fingerprinter) -> None:
        rows = await connection.fetch(
            "SELECT fingerprint, service, category, first_shape, tokens, merged_into, changed"
            " FROM fingerprint_templates WHERE changed > $1 ORDER BY created",
            self._seen,
        )
        for row in rows:
            fingerprinter.apply(
                fingerprint=row["fingerprint"],
                scope=(row["service"], row["category"]),
                first_key=tuple(json.loads(row["first_shape"])),
                tokens=[
                    Token(text, variable, space)
                    for text, variable, space in json.loads(row["tokens"])
                ],
            )
        for row in rows:
            if row["merged_into"] is not None:
                fingerprinter.apply_merge(row["fingerprint"], row["merged_into"])
        if rows:
            self._seen = max(self._seen, max(row["changed"] for row in rows))
        self._refreshed = time.monotonic()

    async def _push(self, connection: asyncpg.Connection, fingerprinter: Fingerprinter) -> int:
        """Write the templates created or changed; the highest change number written."""
        # creations first, so a merge can point at any template it names
        changes = fingerprinter.take_changes()
        newest = 0
        for cluster, _ in changes:
            changed = await connection.fetchval(
                "INSERT INTO fingerprint_templates"
                " (fingerprint, service, category, first_shape, tokens, created)"
                " VALUES ($1, $2, $3, $4, $5, nextval('fingerprint_template_changes'))"
                " ON CONFLICT (fingerprint) DO UPDATE SET tokens = excluded.tokens,"
                " changed = nextval('fingerprint_template_changes') RETURNING changed",
                cluster.fingerprint,
                cluster.scope[0],
                cluster.scope[1],
                json.dumps(list(cluster.first_key)),
                json.dumps([list(token) for token in cluster.tokens]),
            )
            newest = max(newest, int(changed))
        for cluster, into in changes:
            if into is not None:
                changed = await connection.fetchval(
                    "UPDATE fingerprint_templates SET merged_into = $2,"
                    " changed = nextval('fingerprint_template_changes') WHERE fingerprint = $1"
                    " RETURNING changed",
                    cluster.fingerprint,
                    into,
                )
                newest = max(newest, int(changed))
        return newest
