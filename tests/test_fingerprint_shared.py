"""Templates shared in PostgreSQL: one fingerprint per problem across listeners and restarts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiops.fingerprint import Fingerprinter
from aiops.fingerprint.store import SharedTemplates

# one problem whose varying part is a plain word (so the first line seen shapes its
# template), one with data, and two short events told apart by one word
_STREAM = [
    *(
        line
        for name in ("heartbeat", "safebrowsing", "calendar", "weather", "backup", "mail")
        for line in (
            f"{name}: scheduler told me to run this job but the start time is later",
            f"connection to 10.0.0.{len(name)}:5432 refused after {len(name) * 3} retries",
            "VM Paused (Lifecycle Event)" if len(name) % 2 else "VM Resumed (Lifecycle Event)",
        )
    ),
]


@contextmanager
def shared(database_url: str, refresh_s: float = 0.0) -> Iterator[SharedTemplates]:
    store = SharedTemplates(database_url, refresh_s=refresh_s)
    try:
        yield store
    finally:
        store.close()


def test_two_listeners_give_one_fingerprint_per_problem(database_url: str) -> None:
    with shared(database_url) as a_store, shared(database_url) as b_store:
        a, b = Fingerprinter(shared=a_store), Fingerprinter(shared=b_store)
        # listener a takes the even lines, b the odd ones, as a consumer group splits them
        ids = [(a if i % 2 == 0 else b).add(line).fingerprint for i, line in enumerate(_STREAM)]
    one = Fingerprinter()
    assert ids == [one.add(line).fingerprint for line in _STREAM]
    assert len(set(ids)) == 4

    # without the store each listener mines its own templates: one problem, two ids
    a, b = Fingerprinter(), Fingerprinter()
    apart = [(a if i % 2 == 0 else b).add(line).fingerprint for i, line in enumerate(_STREAM)]
    assert len(set(apart)) > 4


def test_a_restarted_listener_gives_the_same_fingerprints(database_url: str) -> None:
    with shared(database_url) as store:
        first = Fingerprinter(shared=store)
        before = [first.add(line).fingerprint for line in _STREAM]
    with shared(database_url) as store:
        restarted = Fingerprinter(shared=store)
        # backwards, so no line is placed again in the order it first was
        after = [restarted.add(line).fingerprint for line in reversed(_STREAM)]
    assert after[::-1] == before


def test_a_merge_reaches_the_other_listener(database_url: str) -> None:
    from aiops.fingerprint import FingerprintConfig

    config = FingerprintConfig(slot_values=3)
    with shared(database_url) as a_store, shared(database_url) as b_store:
        a = Fingerprinter(config, shared=a_store)
        b = Fingerprinter(config, shared=b_store)
        echo = a.add("removing echo").fingerprint
        chargen = b.add("removing chargen").fingerprint
        assert echo != chargen
        # the third value makes the slot data in a: the templates merge into the oldest
        assert a.add("removing daytime").fingerprint == echo
        # b learns the merge on its next refresh, and its old id resolves to the survivor
        assert b.add("removing chargen").fingerprint == echo
        assert b.resolve(chargen) == echo


_LISTENER = """
import json, sys
from aiops.fingerprint import Fingerprinter
from aiops.fingerprint.store import SharedTemplates
url, path, parity = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = json.loads(open(path).read())
store = SharedTemplates(url, refresh_s=0.0)
fp = Fingerprinter(shared=store)
mine = [(i, fp.add(line).fingerprint) for i, line in enumerate(lines) if i % 2 == parity]
print(json.dumps([(i, fp.resolve(f)) for i, f in mine]))
store.close()
"""


def test_two_listener_processes_at_once_agree(database_url: str, tmp_path: Path) -> None:
    lines = tmp_path / "lines.json"
    # the stream twice over, so both processes meet every problem while the other runs
    lines.write_text(json.dumps(_STREAM * 4))
    running = [
        subprocess.Popen(
            [sys.executable, "-c", _LISTENER, database_url, str(lines), str(parity)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for parity in (0, 1)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in running]
    assert [process.returncode for process in running] == [0, 0]
    by_line: dict[str, set[str]] = defaultdict(set)
    stream = _STREAM * 4
    for output in outputs:
        for i, fingerprint in json.loads(output):
            by_line[stream[i]].add(fingerprint)
    # the same line has one fingerprint whichever process read it ...
    assert all(len(ids) == 1 for ids in by_line.values()), by_line
    # ... and the problems are the four the stream holds
    assert len({next(iter(ids)) for ids in by_line.values()}) == 4
