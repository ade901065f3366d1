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
listener meets its known shapes without a round trip, and prefers that placement to any
other answer it has. When PostgreSQL cannot be reached, or the lock is not had within
``lock_timeout_s``, the shape is placed locally (logged), and the store is left alone for
30 s before the next try, so an outage does not cost a timeout per new shape. The templates
made meanwhile are reconciled at the next decision, under the lock: one whose first shape
another process has placed meanwhile, or that the miner now puts in another template, is
merged into it, so the outage does not leave a problem with two fingerprints.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Unplaced:
    """A template made locally while the store could not be reached."""

    scope: Scope
    key: Key
    fingerprint: str


class _Task:
    """The store-thread task running a call, so a caller that gave up can cancel it there."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False

    def cancel(self) -> None:  # on the store's loop
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


class SharedTemplates:
    """Templates shared through PostgreSQL; give it to ``Fingerprinter(shared=...)``."""

    def __init__(
        self,
        database_url: str,
        *,
        refresh_s: float = 5.0,
        timeout_s: float = 2.0,
        lock_timeout_s: float = 0.5,
        load_timeout_s: float = 60.0,
        retry_s: float | None = None,
    ) -> None:
        self._url = database_url
        self.refresh_s = refresh_s
        # the caller (the listener) waits this long at most for a decision, then places the
        # shape itself: a slow database must not stall it
        self._timeout_s = timeout_s
        self._lock_timeout_s = lock_timeout_s
        self._load_timeout_s = load_timeout_s
        self.failures = 0  # calls that found the store unreachable, slow or busy
        self._seen = 0  # the highest change taken from the table
        # every shape placed before this process started, by digest: a restarted listener
        # answers the shapes it has met before without a round trip
        self._placed: dict[tuple[str, str, str], str] = {}
        self._refreshed = 0.0
        # after a failure the store is left alone this long: a stalled database must not
        # stall every new shape by a timeout
        self._retry_s = max(refresh_s, 30.0) if retry_s is None else retry_s
        self._down_until = 0.0
        self._loaded = False
        # templates made while the store was down, reconciled by the next decision
        self._unplaced: list[_Unplaced] = []
        self._connection: asyncpg.Connection | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="aiops-fingerprint-store", daemon=True
        )
        self._thread.start()

    # --- what the fingerprinter calls -----------------------------------------------

    def attach(self, fingerprinter: Fingerprinter) -> None:
        """Load every template and shape so far (a restarted process gives the same ids)."""
        self._guarded(fingerprinter, self._load(fingerprinter), None, self._load_timeout_s)

    def due(self) -> bool:
        return time.monotonic() - self._refreshed >= self.refresh_s

    def placed(self, scope: Scope, key: Key) -> str | None:
        """The template the store placed this shape in before this process started."""
        if not self._placed:
            return None
        return self._placed.get((scope[0], scope[1], shape_digest(key)))

    def refresh(self, fingerprinter: Fingerprinter) -> None:
        """Take the others' changes (generalised and merged templates) without a lock."""
        if not self._loaded:
            self.attach(fingerprinter)
        elif self._unplaced:
            self._guarded(fingerprinter, self._decide(fingerprinter, None), -1)
        else:
            self._guarded(fingerprinter, self._pull_only(fingerprinter), None)

    def learn(self, fingerprinter: Fingerprinter, scope: Scope, key: Key, message: str) -> int:
        """Place a shape this process has not seen, the same way every process would."""
        index = fingerprinter.overflowing(scope, key)
        if index is not None:
            return index  # a full scope: no decision to take, so no lock
        if not self._loaded:
            self.attach(fingerprinter)
        index = self._guarded(fingerprinter, self._decide(fingerprinter, (scope, key, message)), -1)
        if index < 0:
            # degraded: placed locally, pushed and reconciled by the next decision
            before = fingerprinter.template_count()
            index = fingerprinter.learn(scope, key, message)
            if index >= before and fingerprinter.is_template(index):
                self._unplaced.append(_Unplaced(scope, key, fingerprinter.fingerprint_of(index)))
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

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        handle = _Task()

        async def tracked() -> T:
            if handle.cancelled:
                coroutine.close()
                raise asyncio.CancelledError
            handle.task = asyncio.current_task()
            return await coroutine

        future = asyncio.run_coroutine_threadsafe(tracked(), self._loop)
        try:
            return future.result(self._timeout_s if timeout_s is None else timeout_s)
        except TimeoutError:
            # The call runs on, on the store's thread, and changes the templates the caller
            # is about to change too: cancel it there and wait until it has stopped (its
            # awaits are the database's, so it stops at the next one) before going on.
            self._loop.call_soon_threadsafe(handle.cancel)
            done, _ = concurrent.futures.wait([future], timeout=max(self._timeout_s, 5.0))
            if not done:
                log.error("a template store call did not stop when cancelled")
            raise

    def _guarded(
        self,
        fingerprinter: Fingerprinter,
        coroutine: Coroutine[Any, Any, T],
        fallback: T,
        timeout_s: float | None = None,
    ) -> T:
        if time.monotonic() < self._down_until or self._loop.is_closed():
            coroutine.close()
            return fallback
        try:
            return self._run(coroutine, timeout_s)
        except Exception as error:
            self.failures += 1
            self._down_until = time.monotonic() + self._retry_s
            busy = isinstance(error, asyncpg.LockNotAvailableError)
            log.warning(
                "template store %s: fingerprints stay local for %.0f s",
                "busy (its lock was not had in time)" if busy else "unreachable",
                self._retry_s,
                exc_info=not busy,
            )
            connection, self._connection = self._connection, None
            if connection is not None and not self._loop.is_closed():
                # on its own loop's thread, as every use of it
                self._loop.call_soon_threadsafe(connection.terminate)
            return fallback

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(
                self._url,
                timeout=self._timeout_s,
                # the lock is held for one short decision: waiting longer means a stalled
                # holder or a storm, and placing the shape locally is the better answer
                server_settings={"lock_timeout": f"{max(1, int(self._lock_timeout_s * 1000))}ms"},
            )
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
        self._loaded = True

    async def _decide(
        self, fingerprinter: Fingerprinter, shape: tuple[Scope, Key, str] | None
    ) -> int:
        """Under the lock: reconcile what was placed locally, then place ``shape``."""
        connection = await self._connect()
        taken: list[tuple[Any, str | None]] = []
        index, newest = -1, 0
        try:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                await self._pull(connection, fingerprinter)
                shapes = await self._reconcile(connection, fingerprinter)
                placed: str | None = None
                if shape is not None:
                    scope, key, message = shape
                    placed = await self._placement(connection, scope, key)
                    known = None if placed is None else fingerprinter.index_of(placed)
                    index = fingerprinter.learn(scope, key, message) if known is None else known
                    if placed is None:
                        shapes.append((scope, key, index))
                taken = fingerprinter.take_changes()
                # nobody else writes while the lock is held: our changes are the newest
                newest = await self._push(connection, taken)
                for scope, key, placed_in in shapes:
                    await connection.execute(
                        "INSERT INTO fingerprint_shapes (service, category, shape, fingerprint)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        scope[0],
                        scope[1],
                        shape_digest(key),
                        fingerprinter.resolve(fingerprinter.fingerprint_of(placed_in)),
                    )
        except BaseException:
            # not written: the next decision writes them
            fingerprinter.restore_changes(taken)
            raise
        self._seen = max(self._seen, newest)
        self._unplaced.clear()
        return index

    async def _placement(
        self, connection: asyncpg.Connection, scope: Scope, key: Key
    ) -> str | None:
        placed: str | None = await connection.fetchval(
            "SELECT fingerprint FROM fingerprint_shapes"
            " WHERE service = $1 AND category = $2 AND shape = $3",
            scope[0],
            scope[1],
            shape_digest(key),
        )
        return placed

    async def _reconcile(
        self, connection: asyncpg.Connection, fingerprinter: Fingerprinter
    ) -> list[tuple[Scope, Key, int]]:
        """Merge each template made while down into where the store puts its first shape.

        Another process may have placed that shape meanwhile (``fingerprint_shapes``), or
        made a template the miner now puts it in: the local template then joins that one,
        as it would have had the store been up. The shapes to record are returned.
        """
        record: list[tuple[Scope, Key, int]] = []
        for unplaced in self._unplaced:
            if fingerprinter.index_of(unplaced.fingerprint) is None:
                continue
            into = await self._placement(connection, unplaced.scope, unplaced.key)
            if into is None:
                into = fingerprinter.replace(unplaced.fingerprint)
                own = fingerprinter.index_of(unplaced.fingerprint)
                assert own is not None
                record.append((unplaced.scope, unplaced.key, own))
            if into is not None and fingerprinter.resolve(into) != fingerprinter.resolve(
                unplaced.fingerprint
            ):
                log.info(
                    "template %s made while the store was down joins %s",
                    unplaced.fingerprint,
                    into,
                )
                fingerprinter.fold(unplaced.fingerprint, into)
        return record

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

    async def _push(
        self, connection: asyncpg.Connection, changes: list[tuple[Any, str | None]]
    ) -> int:
        """Write the templates created or changed; the highest change number written."""
        # creations first, so a merge can point at any template it names
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
