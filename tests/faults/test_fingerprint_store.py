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
