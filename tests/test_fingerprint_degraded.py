"""The shared template store when PostgreSQL is cut off, slow or locked (REVIEW-1, 3 and 4).

The store is reached through a TCP forwarder that the tests cut, as a network partition
would: nothing is mocked, the listener's store really loses its connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from aiops.fingerprint import FingerprintConfig, Fingerprinter
from aiops.fingerprint.store import _LOCK_KEY, SharedTemplates

L1 = "connection to the upstream server alpha was reset by the peer during read"
L2 = "connection to the upstream server beta was reset by the peer during read"
OTHER = "completely different message shape here now"


class Partition:
    """A TCP forwarder to PostgreSQL that can be cut and restored."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._server = socket.create_server(("127.0.0.1", 0))
        port = self._server.getsockname()[1]
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        self.url = urlunsplit(
            parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )
        self._up = True
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up = False
        with self._lock:
            for end in self._open:
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def restore(self) -> None:
        self._up = True

    def close(self) -> None:
        self.cut()
        self._server.close()


@contextmanager
def stores(*urls: str, **options: float) -> Iterator[list[SharedTemplates]]:
    opened = [SharedTemplates(url, refresh_s=0.0, **options) for url in urls]
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


def _templates(database_url: str) -> dict[str, tuple[str | None, list[str]]]:
    async def read() -> dict[str, tuple[str | None, list[str]]]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT fingerprint, merged_into, tokens FROM fingerprint_templates"
            )
        finally:
            await connection.close()
        return {
            r["fingerprint"]: (r["merged_into"], [t[0] for t in json.loads(r["tokens"])])
            for r in rows
        }

    return asyncio.run(read())


def _wait_for_retry(store: SharedTemplates, retry_s: float) -> None:
    # the store is left alone retry_s after a failure: PostgreSQL is back, wait that out
    time.sleep(retry_s * 1.5)


RETRY_S = 0.3


def test_a_shape_placed_during_an_outage_keeps_the_fingerprint_others_gave(
    database_url: str,
) -> None:
    partition = Partition(database_url)
    try:
        with stores(partition.url, database_url, retry_s=RETRY_S) as (a_store, b_store):
            a, b = Fingerprinter(shared=a_store), Fingerprinter(shared=b_store)
            partition.cut()  # A cannot reach PostgreSQL
            t1 = b.add(L1).fingerprint
            a_l2 = a.add(L2).fingerprint  # A places L2 alone: a new template
            assert a_store.failures >= 1
            assert b.add(L2).fingerprint == t1  # B places it in T1, recorded in the store
            partition.restore()
            _wait_for_retry(a_store, RETRY_S)
            a.add(OTHER)  # A's next decision reconciles what it placed alone
            assert a.add(L2).fingerprint == t1
            assert a.resolve(a_l2) == t1
        with stores(database_url) as (c_store,):
            c = Fingerprinter(shared=c_store)  # B restarted
            assert c.add(L2).fingerprint == t1
            assert c.resolve(a_l2) == t1
    finally:
        partition.close()
    # the template A made alone is kept, merged, so the id it handed out still resolves
    assert _templates(database_url)[a_l2][0] == t1


def test_a_template_made_during_an_outage_joins_one_made_meanwhile(database_url: str) -> None:
    # nobody placed L2 itself, but the miner puts it in the template B made meanwhile
    partition = Partition(database_url)
    try:
        with stores(partition.url, database_url, retry_s=RETRY_S) as (a_store, b_store):
            a, b = Fingerprinter(shared=a_store), Fingerprinter(shared=b_store)
            partition.cut()
            a_l2 = a.add(L2).fingerprint
            t1 = b.add(L1).fingerprint
            assert a_l2 != t1
            partition.restore()
            _wait_for_retry(a_store, RETRY_S)
            a.add(OTHER)
            assert a.add(L2).fingerprint == t1
            assert b.add(L2).fingerprint == t1
        with stores(database_url) as (c_store,):
            c = Fingerprinter(shared=c_store)
            assert [c.add(line).fingerprint for line in (L2, L1)] == [t1, t1]
    finally:
        partition.close()
    merged, tokens = _templates(database_url)[t1]
    assert merged is None and "<*>" in tokens  # T1 generalised over alpha/beta


def test_a_template_made_during_an_outage_alone_is_kept(database_url: str) -> None:
    partition = Partition(database_url)
    try:
        with stores(partition.url, retry_s=RETRY_S) as (a_store,):
            a = Fingerprinter(shared=a_store)
            partition.cut()
            alone = a.add(OTHER).fingerprint
            partition.restore()
            _wait_for_retry(a_store, RETRY_S)
            a.add(L1)
        with stores(database_url) as (c_store,):
            assert Fingerprinter(shared=c_store).add(OTHER).fingerprint == alone
    finally:
        partition.close()
    assert _templates(database_url)[alone][0] is None


@contextmanager
def _holding(database_url: str, sql: str, *args: object) -> Iterator[None]:
    """Another session holds a lock (the advisory lock, a template's row) meanwhile."""
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(database_url))
    transaction = connection.transaction()
    loop.run_until_complete(transaction.start())
    loop.run_until_complete(connection.execute(sql, *args))
    try:
        yield
    finally:
        loop.run_until_complete(transaction.rollback())
        loop.run_until_complete(connection.close())
        loop.close()


def test_a_held_lock_degrades_to_local_placement_at_the_lock_timeout(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with stores(database_url, lock_timeout_s=0.2, timeout_s=30.0, retry_s=RETRY_S) as (store,):
        fp = Fingerprinter(shared=store)
        with (
            caplog.at_level(logging.WARNING, "aiops.fingerprint"),
            _holding(database_url, "SELECT pg_advisory_xact_lock($1)", _LOCK_KEY),
        ):
            placed = fp.add(L1).fingerprint
        # the listener was not held for the call's timeout (30 s) but for the lock's
        assert store.failures == 1
        assert "busy" in caplog.text
        assert placed == Fingerprinter().add(L1).fingerprint
        _wait_for_retry(store, RETRY_S)
        fp.add(OTHER)
    assert placed in _templates(database_url)


def test_a_call_that_times_out_stops_before_the_listener_places_the_shape(
    database_url: str,
) -> None:
    # the call waits for the lock longer than the caller waits for it: it is cancelled on
    # the store's thread, and the caller goes on only once it has stopped
    with stores(database_url, lock_timeout_s=30.0, timeout_s=0.3, retry_s=RETRY_S) as (store,):
        fp = Fingerprinter(shared=store)
        with _holding(database_url, "SELECT pg_advisory_xact_lock($1)", _LOCK_KEY):
            placed = fp.add(L1).fingerprint
            assert store.failures == 1
            assert fp.add(L2).fingerprint == placed  # local: one template, as one miner
        _wait_for_retry(store, RETRY_S)
        other = fp.add(OTHER).fingerprint
        assert len(fp) == 2
    assert set(_templates(database_url)) == {placed, other}


def test_changes_not_written_are_written_by_the_next_decision(database_url: str) -> None:
    with stores(database_url, lock_timeout_s=0.2, retry_s=RETRY_S) as (store,):
        fp = Fingerprinter(shared=store)
        t1 = fp.add(L1).fingerprint
        assert _templates(database_url)[t1][1].count("<*>") == 0
        # L2 generalises T1; writing it waits on the template's row, and gives up
        row = "SELECT 1 FROM fingerprint_templates WHERE fingerprint = $1 FOR UPDATE"
        with _holding(database_url, row, t1):
            assert fp.add(L2).fingerprint == t1
        assert store.failures == 1
        _wait_for_retry(store, RETRY_S)
        fp.add(OTHER)
    assert _templates(database_url)[t1][1].count("<*>") == 1


def test_a_full_scope_places_new_shapes_without_the_lock(database_url: str) -> None:
    config = FingerprintConfig(max_templates_per_scope=2)
    lines = ["alpha bravo charlie", "delta echo foxtrot", "golf hotel india", "juliet kilo lima"]
    with stores(database_url, lock_timeout_s=0.2) as (a_store,):
        a = Fingerprinter(config, shared=a_store)
        ids = [a.add(line, service="api").fingerprint for line in lines]
        assert len(set(ids[:2])) == 2 and ids[2] == ids[3] and ids[2] not in ids[:2]
        # the lock held by someone else: a new shape of a full scope does not need it
        with _holding(database_url, "SELECT pg_advisory_xact_lock($1)", _LOCK_KEY):
            assert a.add("mike november oscar", service="api").fingerprint == ids[2]
        assert a_store.failures == 0
    with stores(database_url) as (b_store,):
        b = Fingerprinter(config, shared=b_store)
        assert [b.add(line, service="api").fingerprint for line in lines] == ids
