"""The event mesh end to end: figures with baselines from the same run, not a test.

    .venv/bin/python bench/events.py [--events 100000] [--latency-seconds 10]
    .venv/bin/python bench/events.py --problem-share 0.1 [--events 30000] [--sources 7]
                                     [--publisher pipe|python] [--profile FILE]
    .venv/bin/python bench/events.py --stopped-seconds 60 [--rate 2000] [--maxlen 10000]

Starts its own PostgreSQL and Redis (durable settings: fsync and AOF on, as in production;
track_commit_timestamp on so latency is measured to the commit), then measures:

1. throughput from XADD to committed rows with one listener process (`python -m
   workers.listener --no-incidents`), against the raw capacity of XADD + XREADGROUP + XACK
   with no processing, both with the publisher running at the same time and as the drain
   of a backlog; plus COPY alone into a plain table for scale;
2. publish-to-commit latency (p50/p99/max) at a steady 1,000 events/s;
3. bytes per stored event, indexes included, for a 200-byte payload.

--problem-share F measures a storm instead (Temporal started too, no worker: the cost
measured is the listener's): F of the events are problem events of --sources services,
the rest informational, on one stream per source, with one listener routing incidents;
events/s with exact counts (every event stored once, every problem event counted on an
incident) from the first XADD to the last acknowledgement (after the last coalesced
signal) and to the last commit, against raw XADD + XREADGROUP + XACK of the same entries
in the same run. The XADDs go through `redis-cli --pipe` (the publisher the issue measured
with, about 1 us of CPU per event) for both runs; --publisher python pipelines them from
this process instead (about 20 us per event, taken from the same two cores).

--stopped-seconds S publishes at --rate events/s for S seconds with no listener running,
on a stream trimmed to --maxlen, then starts one and counts what it stores: an entry
trimmed before the group read it would be missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import cast

import asyncpg
import psutil
import redis.asyncio as aioredis

from aiops.db.migrate import migrate
from aiops.devstack import DevStack, binaries
from aiops.devstack.ports import free_port
from aiops.devstack.stack import ServiceName
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh

ROOT = Path(__file__).resolve().parents[1]
GROUP = "aiops"
BATCH = 500


def payload(i: int) -> dict[str, object]:
    """About 200 bytes of JSON, like a real error report."""
    body: dict[str, object] = {
        "message": f"upstream timed out after {1000 + i % 5000} ms reading from db-{i % 7}:5432",
        "request_id": uuid.UUID(int=i).hex,
        "path": f"/api/v1/orders/{i}",
        "status": 504,
        "latency_ms": 1000.5 + i % 5000,
        "pad": "",
    }
    body["pad"] = "x" * max(0, 200 - len(json.dumps(body, separators=(",", ":"))))
    return body


def events(count: int, source: str = "checkout") -> list[Event]:
    """Fresh ids each call: a run must not be absorbed as repeats of an earlier one."""
    return [
        Event(event_type="MetricReport", source=source, service=source, payload=payload(i))
        for i in range(count)
    ]


def wire(batch: list[Event]) -> list[bytes]:
    return [event.to_wire() for event in batch]


async def publish(client: aioredis.Redis, stream: str, entries: list[bytes]) -> None:
    """The load generator: pre-encoded entries, XADD pipelined 1,000 per round trip, so
    the publisher spends as little of the shared CPU as a client in any language would."""
    for start in range(0, len(entries), 1000):
        async with client.pipeline(transaction=False) as pipe:
            for data in entries[start : start + 1000]:
                pipe.xadd(stream, {"event": data}, maxlen=10_000_000, approximate=True)
            await pipe.execute()


async def group_done(client: aioredis.Redis, stream: str, last_id: bytes) -> bool:
    for info in await client.xinfo_groups(stream):
        if info["name"] == GROUP.encode():
            return bool(info["pending"] == 0 and info["last-delivered-id"] == last_id)
    return False


async def wait_done(client: aioredis.Redis, stream: str) -> None:
    """Until the group has been handed the stream's last entry and acknowledged it all."""
    newest = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrevrange(stream, count=1))
    last = newest[0][0]
    while True:
        if await group_done(client, stream, last):
            return
        await asyncio.sleep(0.01)


async def wait_consumer(client: aioredis.Redis, stream: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            consumers = await client.xinfo_consumers(stream, GROUP)
            if any(c["name"] == name.encode() for c in consumers):
                return
        except aioredis.ResponseError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"consumer {name} did not start on {stream}")


# CPU seconds per event of each consumer process while the clock ran
CPU: dict[str, float] = {}


def consumer_label(_: object, consumer: str, backlog: bool) -> str:
    return f"{consumer}-{'backlog' if backlog else 'live'}"


def start_listener(
    env: dict[str, str], stream: str, name: str, log: Path
) -> subprocess.Popen[bytes]:
    child_env = {
        **env,
        "AIOPS_LISTENER_STREAMS": stream,
        "AIOPS_LISTENER_BATCH_SIZE": str(BATCH),
        "AIOPS_LOG_LEVEL": "WARNING",
        # the bench writes its stream as the default user, as a dev stack's service does
        "AIOPS_EVENT_TRUST": "open",
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.listener", "--no-incidents", "--consumer", name],
            env=child_env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_raw(redis_url: str, stream: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--raw-consumer", redis_url, stream, name],
        cwd=ROOT,
    )


async def raw_consumer(redis_url: str, stream: str, name: str) -> None:
    """XREADGROUP + XACK, nothing else: the ceiling for one Python consumer. `stream` may
    name several, comma-separated."""
    client = aioredis.Redis.from_url(redis_url)
    streams = stream.split(",")
    # a read of our own (empty) history registers the consumer; a blocking read on 6.2
    # does not until it is served
    await client.xreadgroup(GROUP, name, dict.fromkeys(streams, "0"), count=1)
    while True:
        reply = cast(
            list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
            await client.xreadgroup(
                GROUP, name, dict.fromkeys(streams, ">"), count=BATCH, block=1000
            ),
        )
        for stream_name, rows in reply or []:
            await client.xack(stream_name, GROUP, *(entry_id for entry_id, _ in rows))


async def timed_run(
    client: aioredis.Redis,
    stream: str,
    batch: list[bytes],
    start_consumer: Callable[[], subprocess.Popen[bytes]],
    consumer: str,
    *,
    backlog: bool,
) -> float:
    """Events/s from the first XADD to the last acknowledgement (the listener acknowledges
    after the commit, so for it that is to the last committed row)."""
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    if backlog:
        await publish(client, stream, batch)
    process = start_consumer()
    try:
        await wait_consumer(client, stream, consumer, 60)
        watched = psutil.Process(process.pid)
        cpu_before = sum(watched.cpu_times()[:2])
        started = time.perf_counter()
        if not backlog:
            await publish(client, stream, batch)
        await wait_done(client, stream)
        elapsed = time.perf_counter() - started
        cpu = sum(watched.cpu_times()[:2]) - cpu_before
        CPU[consumer_label(start_consumer, consumer, backlog)] = cpu / len(batch)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return len(batch) / elapsed


async def copy_baseline(database_url: str, count: int) -> float:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE TABLE copy_baseline (id uuid, ts timestamptz, event_type text, source text,"
            " payload text, stream text, stream_entry_id text)"
        )
        rows = [
            (e.id, e.timestamp, e.event_type, e.source, json.dumps(e.payload), "s", "1-0")
            for e in events(count)
        ]
        started = time.perf_counter()
        for start in range(0, count, BATCH):
            await conn.copy_records_to_table("copy_baseline", records=rows[start : start + BATCH])
        elapsed = time.perf_counter() - started
        await conn.execute("DROP TABLE copy_baseline")
        return count / elapsed
    finally:
        await conn.close()


async def latency_run(
    client: aioredis.Redis, env: dict[str, str], database_url: str, seconds: float, log: Path
) -> list[float]:
    stream = "events:latency"
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    process = start_listener(env, stream, "latency", log)
    mesh = EventMesh(client)
    try:
        await wait_consumer(client, stream, "latency", 60)
        # 10 events every 10 ms: 1,000 events/s, each stamped just before its XADD
        ticks = int(seconds * 100)
        start = time.perf_counter()
        for tick in range(ticks):
            batch = [
                Event(event_type="MetricReport", source="latency", payload=payload(tick * 10 + k))
                for k in range(10)
            ]
            await mesh.publish_many(batch, stream=stream)
            delay = start + (tick + 1) / 100 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await wait_done(client, stream)
    finally:
        process.terminate()
        process.wait(timeout=30)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts) * 1000 AS ms"
            " FROM events WHERE stream = $1",
            stream,
        )
    finally:
        await conn.close()
    return sorted(float(r["ms"]) for r in rows)


async def bytes_per_event(database_url: str) -> tuple[float, int, float]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("VACUUM ANALYZE events")
        rows = await conn.fetchval("SELECT count(*) FROM events")
        total = await conn.fetchval("SELECT pg_total_relation_size('events')")
        payload_bytes = await conn.fetchval("SELECT avg(octet_length(payload::text)) FROM events")
        return total / rows, rows, float(payload_bytes)
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


# --- a storm: problem events among informational ones, incidents routed -----------------


def storm_events(count: int, share: float, sources: int) -> list[tuple[str, Event]]:
    """(source, event) pairs: the i-th event comes from source i % sources, and `share` of
    them, spread evenly, are problem events whose text varies only in masked numbers, so
    each source's problems are one fingerprint (one incident) however many there are."""
    out: list[tuple[str, Event]] = []
    for i in range(count):
        source = f"storm-{i % sources}"
        if int((i + 1) * share) > int(i * share):
            event = Event(
                event_type="ServiceError",
                source=source,
                service=source,
                severity="error",
                payload={
                    "message": f"upstream timed out after {1000 + i % 5000} ms reading from "
                    f"db-{i % sources}:5432",
                    "request_id": uuid.UUID(int=i).hex,
                },
            )
        else:
            event = Event(
                event_type="MetricReport", source=source, service=source, payload=payload(i)
            )
        out.append((source, event))
    return out


async def publish_many_streams(
    client: aioredis.Redis, entries: list[tuple[str, bytes]], *, maxlen: int | None = None
) -> None:
    """Pipelined XADD of (stream, data) pairs, 1,000 per round trip."""
    for start in range(0, len(entries), 1000):
        async with client.pipeline(transaction=False) as pipe:
            for stream, data in entries[start : start + 1000]:
                if maxlen is None:
                    pipe.xadd(stream, {"event": data})
                else:
                    pipe.xadd(stream, {"event": data}, maxlen=maxlen, approximate=True)
            await pipe.execute()


def resp_xadds(entries: list[tuple[str, bytes]]) -> bytes:
    """XADD stream * event <data> for each pair, in the Redis protocol (RESP), as
    `redis-cli --pipe` sends it."""
    parts: list[bytes] = []
    for stream, data in entries:
        name = stream.encode()
        parts.append(
            b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$5\r\nevent\r\n$%d\r\n%s\r\n"
            % (len(name), name, len(data), data)
        )
    return b"".join(parts)


def publish_pipe(redis_url: str, protocol: Path, count: int) -> float:
    """`redis-cli --pipe` of a RESP file (the publisher the issue measured with); returns
    the CPU seconds redis-cli spent."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(protocol, "rb") as source:
        done = subprocess.run(
            [str(binaries.redis_cli()), "-u", redis_url, "--pipe"],
            stdin=source,
            capture_output=True,
            check=False,
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0 or f"errors: 0, replies: {count}" not in text:
        raise RuntimeError(f"redis-cli --pipe failed: {text}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


async def wait_all_done(client: aioredis.Redis, streams: list[str]) -> None:
    for stream in streams:
        await wait_done(client, stream)


# --profile: where the routing listener's cProfile stats go
PROFILE_TO: Path | None = None


def profiled_listener(path: str, args: list[str]) -> None:
    """`python -m workers.listener ARGS` under cProfile, the stats written to path as it
    returns (cProfile.run catches the SystemExit of typer.run)."""
    import cProfile

    import typer

    from workers.listener import listen

    sys.path.insert(0, str(ROOT))
    sys.argv = ["workers.listener", *args]
    cProfile.runctx("typer.run(listen)", {"typer": typer, "listen": listen}, {}, path)


def start_routing_listener(
    env: dict[str, str], pattern: str, name: str, log: Path
) -> subprocess.Popen[bytes]:
    child_env = {
        **env,
        "AIOPS_LISTENER_STREAMS": pattern,
        "AIOPS_LISTENER_BATCH_SIZE": str(BATCH),
        "AIOPS_LOG_LEVEL": "INFO",
        "AIOPS_EVENT_TRUST": "open",
        # no worker polls it: what is measured is the listener's routing, not the incidents
        "AIOPS_TASK_QUEUE": "bench-nobody",
    }
    command = ["--incidents", "--consumer", name]
    if PROFILE_TO is not None:
        # under cProfile: the stats (the main thread's) are written when it stops
        profile = PROFILE_TO.with_name(f"{PROFILE_TO.stem}-{name}{PROFILE_TO.suffix}")
        command = [sys.executable, __file__, "--profiled-listener", str(profile), *command]
    else:
        command = [sys.executable, "-m", "workers.listener", *command]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            env=child_env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def listener_totals(log: Path, name: str) -> dict[str, int]:
    """The counters of the listener's last `stopped:` line in its log."""
    found: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if f"listener {name} stopped:" in line:
            fields = line.split("stopped:", 1)[1].split()
            found = {k: int(v) for k, v in (f.split("=", 1) for f in fields if "=" in f)}
    return found


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of a server and each of its children (PostgreSQL's backends), by pid."""
    found: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                found[process.pid] = sum(process.cpu_times()[:2])
    except psutil.Error:
        pass
    return found


def servers_cpu(servers: dict[str, int]) -> dict[str, dict[int, float]]:
    return {name: tree_cpu(pid) for name, pid in servers.items()}


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """What the tree spent between two readings (a process started since counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def main_thread_cpu(process: psutil.Process) -> float:
    """CPU seconds of the process's main thread (Python's; the rest is the Temporal
    client's and the drivers' threads)."""
    for thread in process.threads():
        if thread.id == process.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


async def storm_run(
    client: aioredis.Redis,
    env: dict[str, str],
    database_url: str,
    count: int,
    share: float,
    sources: int,
    log: Path,
    servers: dict[str, int],
    publisher: str,
) -> None:
    """`servers`: the pid of each server (its CPU per event is reported too). publisher
    "pipe": `redis-cli --pipe` of the XADDs; "python": pipelined XADDs from this process."""
    pairs = storm_events(count, share, sources)
    problems = sum(1 for _, e in pairs if e.event_type == "ServiceError")
    figures: dict[str, float] = {}
    for mode in ("raw", "e2e"):
        tag = uuid.uuid4().hex[:6]
        streams = [f"events:storm{tag}-{k}" for k in range(sources)]
        entries = [(f"events:storm{tag}-{s.rsplit('-', 1)[1]}", e.to_wire()) for s, e in pairs]
        protocol = log.with_name(f"xadds-{tag}.resp")
        protocol.write_bytes(resp_xadds(entries))
        for stream in streams:
            await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        name = f"{mode}-{tag}"
        process = (
            start_raw(env["REDIS_URL"], ",".join(streams), name)
            if mode == "raw"
            else start_routing_listener(env, f"events:storm{tag}-*", name, log)
        )
        try:
            for stream in streams:
                await wait_consumer(client, stream, name, 60)
            watched = psutil.Process(process.pid)
            cpu_before = sum(watched.cpu_times()[:2])
            main_before = main_thread_cpu(watched)
            servers_before = servers_cpu(servers)
            publisher_before = time.process_time()
            started_at = time.time()
            started = time.perf_counter()
            if publisher == "pipe":
                spent = await asyncio.to_thread(publish_pipe, env["REDIS_URL"], protocol, count)
                CPU[f"{mode}-storm, the publisher (redis-cli --pipe)"] = spent / count
            else:
                await publish_many_streams(client, entries)
                CPU[f"{mode}-storm, the publisher (this process)"] = (
                    time.process_time() - publisher_before
                ) / count
            await wait_all_done(client, streams)
            elapsed = time.perf_counter() - started
            servers_after = servers_cpu(servers)
            for server, after in servers_after.items():
                CPU[f"{mode}-storm, server {server}"] = (
                    cpu_spent(servers_before[server], after) / count
                )
            CPU[f"{mode}-storm"] = (sum(watched.cpu_times()[:2]) - cpu_before) / count
            CPU[f"{mode}-storm, main thread"] = (main_thread_cpu(watched) - main_before) / count
        finally:
            process.terminate()
            process.wait(timeout=60)
        figures[mode] = count / elapsed
        protocol.unlink()
        if mode == "e2e":
            conn = await asyncpg.connect(database_url)
            try:
                stored = await conn.fetchval(
                    "SELECT count(DISTINCT id) FROM events WHERE stream LIKE $1",
                    f"events:storm{tag}-%",
                )
                # the last commit (track_commit_timestamp is on): stored, while the last
                # entries may still wait for their coalesced signal to be acknowledged
                last_commit = await conn.fetchval(
                    "SELECT max(pg_xact_commit_timestamp(xmin)) FROM events WHERE stream LIKE $1",
                    f"events:storm{tag}-%",
                )
            finally:
                await conn.close()
            figures["stored"] = count / (last_commit.timestamp() - started_at)
            totals = listener_totals(log, name)
            print(
                f"storm of {count} events, {share:.0%} problem events ({problems}) from "
                f"{sources} sources; one listener routing incidents, batch {BATCH}"
            )
            print(
                f"  stored {stored} of {count} ({'exact' if stored == count else 'NOT EXACT'});"
                f" problem events counted for incidents {totals.get('problems')} of {problems}"
                f" ({'exact' if totals.get('problems') == problems else 'NOT EXACT'});"
                f" observations {totals.get('observations')}, signals {totals.get('signals')}"
            )
        for stream in streams:
            await client.delete(stream)
    raw, e2e = figures["raw"], figures["e2e"]
    print(f"  publisher: {'redis-cli --pipe' if publisher == 'pipe' else 'Python, pipelined'}")
    print(
        f"  end to end {e2e:>9,.0f} events/s   raw XADD+XREADGROUP+XACK {raw:>9,.0f}"
        f"   ratio {e2e / raw:.2f}   goal 25,000: {'met' if e2e >= 25_000 else 'not met'}"
        "   (first XADD to last XACK, signals included)"
    )
    stored_rate = figures["stored"]
    print(
        f"  stored     {stored_rate:>9,.0f} events/s   ratio {stored_rate / raw:.2f}"
        "   (first XADD to the last event's commit)"
    )
    for label, seconds in sorted(CPU.items()):
        what = (
            "CPU of"
            if ", server " in label or "publisher" in label
            else "CPU of the consumer process,"
        )
        print(f"  {what} {label}: {seconds * 1e6:.1f} us/event")


async def stopped_run(
    client: aioredis.Redis,
    env: dict[str, str],
    database_url: str,
    seconds: float,
    rate: int,
    maxlen: int,
    log: Path,
) -> None:
    """The listener away for `seconds` under load on a stream published with the mesh's
    own XADD (and its trimming): what comes back once it returns."""
    stream = f"events:stopped-{uuid.uuid4().hex[:6]}"
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    mesh = EventMesh(client, maxlen=maxlen)
    sent = 0
    started = time.perf_counter()
    tick = 0.1
    per_tick = max(1, int(rate * tick))
    while time.perf_counter() - started < seconds:
        batch = [
            Event(event_type="MetricReport", source="stopped", payload=payload(sent + k))
            for k in range(per_tick)
        ]
        await mesh.publish_many(batch, stream=stream)
        sent += len(batch)
        delay = started + (sent / per_tick) * tick - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    length = int(await client.xlen(stream))
    child_env = {**env, "AIOPS_EVENTS_MAXLEN": str(maxlen)}
    process = start_listener(child_env, stream, "stopped", log)
    try:
        await wait_consumer(client, stream, "stopped", 60)
        await wait_done(client, stream)
    finally:
        process.terminate()
        process.wait(timeout=30)
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events WHERE stream = $1", stream)
    finally:
        await conn.close()
    print(
        f"listener stopped for {seconds:.0f}s while {sent} events were published at "
        f"{rate}/s onto a stream with MAXLEN ~{maxlen}: {length} entries in the stream when "
        f"it came back, {stored} stored, {sent - stored} lost"
    )


async def bench(count: int, latency_seconds: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-events-"))
    stack = DevStack(
        home, postgres_port=free_port(), redis_port=free_port(), services=("postgres", "redis")
    )
    try:
        state = (await stack.up()).state
        database_url = state.services["postgres"].url
        redis_url = state.services["redis"].url
        conn = await asyncpg.connect(database_url)
        await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
        await conn.close()
        stack.down(timeout=30)
        state = (await stack.up()).state
        await migrate(database_url, 384)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
        env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url})
        client = aioredis.Redis.from_url(redis_url)
        log = home / "listener.log"
        wire_bytes = len(events(1)[0].to_wire())
        print(f"{count} events of {wire_bytes} bytes on the wire; one listener, batch {BATCH}")
        print(f"machine: {os.cpu_count()} cores, PostgreSQL and Redis on the same machine\n")

        figures: dict[str, float] = {}
        for mode, backlog in (("live", False), ("backlog", True)):
            raw_stream, e2e_stream = f"events:raw-{mode}", f"events:e2e-{mode}"
            figures[f"raw_{mode}"] = await timed_run(
                client,
                raw_stream,
                wire(events(count)),
                partial(start_raw, redis_url, raw_stream, "raw"),
                "raw",
                backlog=backlog,
            )
            figures[f"e2e_{mode}"] = await timed_run(
                client,
                e2e_stream,
                wire(events(count)),
                partial(start_listener, env, e2e_stream, "bench", log),
                "bench",
                backlog=backlog,
            )
            await client.delete(f"events:raw-{mode}")
        per_event, rows, payload_bytes = await bytes_per_event(database_url)
        copy_rate = await copy_baseline(database_url, count)
        latencies = await latency_run(client, env, database_url, latency_seconds, log)
        await client.aclose()

        print("throughput (events/s, first XADD to last commit; raw: to last XACK)")
        for mode, label in (
            ("live", "publisher running alongside"),
            ("backlog", "draining a backlog"),
        ):
            raw, e2e = figures[f"raw_{mode}"], figures[f"e2e_{mode}"]
            print(
                f"  {label:<28} end to end {e2e:>9,.0f}   raw Streams {raw:>9,.0f}"
                f"   ratio {e2e / raw:.2f}   vs seed 10,000: {e2e / 10_000:.1f}x"
            )
        for label, seconds in sorted(CPU.items()):
            print(f"  CPU of the consumer process, {label}: {seconds * 1e6:.1f} us/event")
        print(
            f"  COPY alone (one client, batches of {BATCH}, plain table): {copy_rate:,.0f} rows/s"
        )
        print(
            f"\nlatency publish -> commit at 1,000 events/s for {latency_seconds:.0f}s "
            f"({len(latencies)} events): p50 {statistics.median(latencies):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {latencies[-1]:.1f} ms"
        )
        print(
            f"\nstorage: {per_event:.0f} bytes per event including indexes "
            f"({rows} rows, payload {payload_bytes:.0f} bytes of JSON); seed: 1 KB "
            f"({1024 / per_event:.1f}x smaller)"
        )
        print(f"\n(run at {datetime.now(UTC).isoformat(timespec='seconds')})")
    finally:
        stack.down(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


async def special(args: argparse.Namespace) -> None:
    """--problem-share or --stopped-seconds, on a stack of their own."""
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-events-"))
    storm = args.problem_share is not None
    services: tuple[ServiceName, ...] = (
        ("postgres", "redis", "temporal") if storm else ("postgres", "redis")
    )
    stack = DevStack(
        home,
        postgres_port=free_port(),
        redis_port=free_port(),
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        services=services,
    )
    try:
        state = (await stack.up()).state
        database_url = state.services["postgres"].url
        if storm:
            # the storm's rate to the last commit is read from the commit timestamps
            conn = await asyncpg.connect(database_url)
            await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
            await conn.close()
            stack.down(timeout=30)
            state = (await stack.up()).state
        await migrate(database_url, 384)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
        env.update(state.env())
        client = aioredis.Redis.from_url(state.services["redis"].url)
        log = home / "listener.log"
        print(f"machine: {os.cpu_count()} cores, servers on the same machine\n")
        if storm:
            servers = {name: svc.process.pid for name, svc in state.services.items()}
            await storm_run(
                client,
                env,
                database_url,
                args.events,
                args.problem_share,
                args.sources,
                log,
                servers,
                args.publisher,
            )
        else:
            await stopped_run(
                client, env, database_url, args.stopped_seconds, args.rate, args.maxlen, log
            )
        await client.aclose()
        print(f"\n(run at {datetime.now(UTC).isoformat(timespec='seconds')})")
    finally:
        stack.down(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--profiled-listener":
        profiled_listener(sys.argv[2], sys.argv[3:])
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--raw-consumer":
        asyncio.run(raw_consumer(*sys.argv[2:]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument(
        "--problem-share", type=float, default=None, help="measure a storm with this share"
    )
    parser.add_argument("--sources", type=int, default=7)
    parser.add_argument(
        "--stopped-seconds", type=float, default=None, help="listener away this long"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="with --problem-share: write the listener's cProfile stats to this file",
    )
    parser.add_argument(
        "--publisher",
        choices=("pipe", "python"),
        default="pipe",
        help="with --problem-share: redis-cli --pipe (default), or pipelined XADDs from Python",
    )
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--maxlen", type=int, default=10_000)
    args = parser.parse_args()
    global PROFILE_TO
    PROFILE_TO = args.profile
    if args.problem_share is not None or args.stopped_seconds is not None:
        args.events = args.events or 30_000
        asyncio.run(special(args))
        return
    asyncio.run(bench(args.events or 100_000, args.latency_seconds))


if __name__ == "__main__":
    main()
