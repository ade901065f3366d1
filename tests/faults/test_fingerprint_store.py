"""A listener killed (-9) while it places new line shapes in the shared template store.

The one placing a shape holds a transaction-scoped lock; killed, its transaction rolls back
and the lock goes with its connection. Every shape it reported is in the store, a listener
started afterwards gives each of its lines the fingerprint it gave, and no shape has two.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import Any

import asyncpg

from aiops.fingerprint import Fingerprinter
from aiops.fingerprint.store import SharedTemplates, shape_digest
from aiops.fingerprint.tokens import key_of

# ten problems whose varying part is a plain word, so which line of a problem is seen
# first decides its id, interleaved: most lines are a decision taken under the lock
_PROBLEMS = list(
    zip(
        ("worker", "scheduler", "replica", "gateway", "indexer", "mailer", "cache", "broker",
         "uploader", "resolver"),
        ("pool", "queue", "set", "route", "shard", "spool", "tier", "topic", "batch", "zone"),
        strict=True,
    )
)  # fmt: skip
_VALUES = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
]
_LINES = [
    f"{who} {what} rejected the task because the queue for {value} was full again today"
    for value in _VALUES
    for who, what in _PROBLEMS
]

_LISTENER = """
import json, sys
from aiops.fingerprint import Fingerprinter
from aiops.fingerprint.store import SharedTemplates
url, lines = sys.argv[1], json.loads(sys.argv[2])
fp = Fingerprinter(shared=SharedTemplates(url, refresh_s=0.0))
for i, line in enumerate(lines):
    print(json.dumps([i, fp.add(line).fingerprint]), flush=True)
"""


def test_a_listener_killed_while_placing_shapes(database_url: str, fault_table: Any) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _LISTENER, database_url, json.dumps(_LINES)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    reported: dict[int, str] = {}
    for raw in process.stdout:
        i, fingerprint = json.loads(raw)
        reported[i] = fingerprint
        if len(reported) == len(_LINES) // 3:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    placed = asyncio.run(_placed(database_url))
    lost = sum(1 for i in reported if shape_digest(key_of(_LINES[i])) not in placed)

    store = SharedTemplates(database_url, refresh_s=0.0)
    try:
        restarted = Fingerprinter(shared=store)
        # backwards: without the store, the first line of a problem it sees differs
        again = [restarted.add(line).fingerprint for line in reversed(_LINES)][::-1]
    finally:
        store.close()
    changed = sum(
        1 for i, fingerprint in reported.items() if restarted.resolve(fingerprint) != again[i]
    )
    # the same line, the same problem: one fingerprint per shape across the two lives
    by_shape: dict[tuple[str, ...], set[str]] = {}
    for i, fingerprint in reported.items():
        by_shape.setdefault(key_of(_LINES[i]), set()).add(restarted.resolve(fingerprint))
    for i, fingerprint in enumerate(again):
        by_shape.setdefault(key_of(_LINES[i]), set()).add(fingerprint)
    twice = sum(1 for ids in by_shape.values() if len(ids) > 1)

    fault_table.record(
        fault="listener kill -9 placing template shapes",
        unit="shapes",
        sent=len(reported),
        lost=lost,
        duplicated=twice + changed,
        note=f"killed after {len(reported)} of {len(_LINES)} lines; restarted one read all",
    )
    assert (lost, twice, changed) == (0, 0, 0)
    assert len(set(again)) == len(_PROBLEMS)


async def _placed(database_url: str) -> dict[str, str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT shape, fingerprint FROM fingerprint_shapes")
    finally:
        await connection.close()
    return {row["shape"]: row["fingerprint"] for row in rows}


def test_one_listener_cut_off_from_postgresql_while_placing_shapes(
    database_url: str, fault_table: Any
) -> None:
    # imported here: the forwarder lives with the store's other degraded-mode tests
    from test_fingerprint_degraded import Partition

    partition = Partition(database_url)
    a_store = SharedTemplates(partition.url, refresh_s=0.0, retry_s=0.2)
    b_store = SharedTemplates(database_url, refresh_s=0.0)
    given: dict[int, str] = {}
    try:
        a, b = Fingerprinter(shared=a_store), Fingerprinter(shared=b_store)
        partition.cut()  # A places its lines alone for the first half of the stream
        for i, line in enumerate(_LINES):
            if i == len(_LINES) // 2:
                partition.restore()
                time.sleep(0.3)  # A's retry delay
            # each listener meets every problem, a third of the lines A's
            given[i] = (a if i % 3 == 0 else b).add(line).fingerprint
        # what each listener would give each line now: the ids they gave still resolve
        now_a = {i: a.resolve(f) for i, f in given.items()}
        now_b = {i: b.resolve(f) for i, f in given.items()}
        b_again = [b.add(line).fingerprint for line in _LINES]
        a_again = [a.add(line).fingerprint for line in _LINES]
    finally:
        a_store.close()
        b_store.close()
        partition.close()
    assert a_store.failures >= 1
    store = SharedTemplates(database_url, refresh_s=0.0)
    try:
        restarted = Fingerprinter(shared=store)
        c_again = [restarted.add(line).fingerprint for line in reversed(_LINES)][::-1]
        now_c = {i: restarted.resolve(f) for i, f in given.items()}
    finally:
        store.close()
    by_problem: dict[tuple[str, str], set[str]] = {}
    for i, line in enumerate(_LINES):
        ids = {now_a[i], now_b[i], now_c[i], a_again[i], b_again[i], c_again[i]}
        who, what = line.split()[:2]
        by_problem.setdefault((who, what), set()).update(ids)
    # a problem with two ids is a second incident for it
    twice = sum(len(ids) - 1 for ids in by_problem.values())
    fault_table.record(
        fault="listener cut off from PostgreSQL placing shapes",
        unit="problems",
        sent=len(by_problem),
        lost=0,
        duplicated=twice,
        note=f"{len(_LINES)} lines, two listeners, one cut off for the first half; "
        "then both and a restarted one read all",
    )
    assert twice == 0, by_problem
    assert len(by_problem) == len(_PROBLEMS)
