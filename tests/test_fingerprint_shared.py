"""Templates shared in PostgreSQL: one fingerprint per problem across listeners and restarts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_events_helpers import mesh_settings

from aiops.config import Settings
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.fingerprint import FingerprintConfig, Fingerprinter
from aiops.fingerprint.store import SharedTemplates
from workers.listener import run_listener

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


async def _incident_ids(client: Client, queue: str) -> set[str]:
    query = f"TaskQueue='{queue}' AND WorkflowType='IncidentWorkflow'"
    return {execution.id async for execution in client.list_workflows(query)}


@pytest.mark.parametrize("shared_templates", [True, False])
async def test_two_listeners_on_one_stream_open_one_incident_per_problem(
    redis_url: str,
    database_url: str,
    stream_prefix: str,
    temporal_env: WorkflowEnvironment,
    shared_templates: bool,
) -> None:
    client = temporal_env.client
    queue = f"fingerprints-{uuid.uuid4().hex[:8]}"
    settings = mesh_settings(
        redis_url,
        database_url,
        stream_prefix,
        temporal_address=client.service_client.config.target_host,
        temporal_task_queue=queue,
        # one entry per read, so the two listeners take turns on the stream
        listener_batch_size=1,
        fingerprint_shared=shared_templates,
        fingerprint_refresh_s=0.0,
        tracing="off",
    )
    redis_client = aioredis.Redis.from_url(redis_url)
    mesh = EventMesh(redis_client)
    stop = asyncio.Event()
    listeners = [
        asyncio.create_task(run_listener(settings, stop=stop, consumer=name)) for name in "ab"
    ]
    try:
        await asyncio.sleep(1.0)  # both listeners are waiting on the group
        for line in _STREAM:
            event = Event(event_type="ApplicationError", source="api", payload={"message": line})
            await mesh.publish(event, stream=f"{stream_prefix}:logs")
            await asyncio.sleep(0.05)
        await _all_stored(settings, len(_STREAM))
        await asyncio.sleep(1.0)  # the last batch's incidents are started after it is stored
        incidents = await _incident_ids(client, queue)
    finally:
        stop.set()
        done = [await asyncio.wait_for(task, 30) for task in listeners]
        await redis_client.aclose()
        for workflow_id in await _incident_ids(client, queue):
            await client.get_workflow_handle(workflow_id).terminate("test done")
    # both listeners took part
    assert all(stats.problems > 0 for stats in done), [s.line() for s in done]
    if shared_templates:
        assert len(incidents) == 4, incidents
    else:
        # each listener mines its own templates: the problem whose first line differs
        # between them opens two incidents (what the shared store is for)
        assert len(incidents) > 4, incidents


async def _all_stored(settings: Settings, count: int, timeout: float = 30.0) -> None:
    connection = await asyncpg.connect(str(settings.database_url))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await connection.fetchval("SELECT count(*) FROM events") >= count:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"fewer than {count} events stored in {timeout} s")
    finally:
        await connection.close()


def test_an_unreachable_store_leaves_fingerprints_local() -> None:
    # nothing listens on port 1: the listener keeps fingerprinting rather than stopping, and
    # tries the store again only after a while (one failed connection, not one per shape)
    with shared("postgresql://aiops@127.0.0.1:1/aiops", refresh_s=3600) as store:
        fp = Fingerprinter(shared=store)
        ids = [fp.add(line).fingerprint for line in _STREAM]
        # one failed attempt, then none until the retry delay has passed
        assert store.failures == 1
    one = Fingerprinter()
    assert ids == [one.add(line).fingerprint for line in _STREAM]
