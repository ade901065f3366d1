"""Alert intake end to end: figures with the baseline from the same run, not a test.

    .venv/bin/python bench/intake.py [--alerts 50000] [--events 10000] [--connections 4]

Starts its own PostgreSQL, Redis and Temporal (the API connects to Temporal at start),
then `aiops api` (uvicorn, as shipped: one process) and one listener (`python -m
workers.listener --no-incidents`, AIOPS_EVENT_TRUST=open) reading events:api, and
measures, from the first request to the last row committed in the events table:

1. Alertmanager notifications of 100 alerts each posted to POST /intake/alertmanager over
   a few keep-alive connections (httpx.AsyncClient): alerts/s stored;
2. the baseline: raw POST /events, one event per request, same connections: events/s;

and prints the ratio. The client runs on the same machine and shares its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import psutil

from aiops.auth import Role, issue_token
from aiops.db.migrate import migrate
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100
# the `aiops` command next to this interpreter: the API as it is shipped
AIOPS = Path(sys.executable).with_name("aiops")
SECRET = "bench-intake-" + uuid.uuid4().hex


def notification(batch: int) -> bytes:
    """An Alertmanager v4 notification of BATCH distinct alerts (distinct ids)."""
    now = datetime.now(UTC)
    alerts = []
    for k in range(BATCH):
        n = batch * BATCH + k
        alerts.append(
            {
                "status": "firing",
                "labels": {
                    "alertname": "HighErrorRate",
                    "service": f"svc-{n % 50}",
                    "job": "api",
                    "instance": f"10.0.{n % 250}.{k}:8080",
                    "severity": "critical",
                    "env": "prod",
                    "n": str(n),
                },
                "annotations": {
                    "summary": f"5xx ratio above 5% on svc-{n % 50}",
                    "description": f"error ratio {0.05 + (n % 100) / 1000:.3f} over 5m",
                },
                "startsAt": (now - timedelta(seconds=n % 600)).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=rate",
                "fingerprint": f"{n:016x}",
            }
        )
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{batch="{batch}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "env": "prod"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def raw_event(i: int) -> bytes:
    """One envelope event about as large as one mapped alert's."""
    return json.dumps(
        {
            "event_type": "ServiceError",
            "source": "bench-raw",
            "service": f"svc-{i % 50}",
            "severity": "error",
            "payload": {
                "message": f"5xx ratio above 5% on svc-{i % 50}",
                "labels": {"env": "prod", "n": str(i), "instance": f"10.0.{i % 250}.1:8080"},
                "annotations": {"description": f"error ratio {0.05 + (i % 100) / 1000:.3f}"},
            },
        }
    ).encode()


async def post_all(
    url: str, token: str, bodies: Sequence[bytes], connections: int
) -> tuple[float, int]:
    """POST every body over `connections` keep-alive connections; (seconds, failures)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    failures = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            answer = await client.post(url, content=body, headers=headers)
            if answer.status_code != 202:
                failures += 1
                if failures <= 3:
                    print(f"  {url}: {answer.status_code} {answer.text[:200]}", file=sys.stderr)

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        return time.perf_counter() - started, failures


async def wait_rows(database_url: str, source: str, count: int, timeout: float = 600) -> float:
    """perf_counter() when the events table first holds `count` rows from `source`."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stored = await conn.fetchval("SELECT count(*) FROM events WHERE source = $1", source)
            if stored >= count:
                return time.perf_counter()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"only {stored} of {count} {source} events stored")
    finally:
        await conn.close()


# CPU seconds of each server process during the last timed run
CPU: dict[str, float] = {}
WATCHED: dict[str, psutil.Process] = {}


def cpu_now() -> dict[str, float]:
    return {name: sum(p.cpu_times()[:2]) for name, p in WATCHED.items()}


async def timed(
    base: str,
    route: str,
    token: str,
    bodies: list[bytes],
    connections: int,
    *,
    rows: int,
    source: str,
    database_url: str,
) -> tuple[float, float]:
    """(rows stored per second, requests answered per second), from the first request."""
    before = cpu_now()
    started = time.perf_counter()
    waiting = asyncio.create_task(wait_rows(database_url, source, rows))
    seconds, failures = await post_all(base + route, token, bodies, connections)
    if failures:
        waiting.cancel()
        raise RuntimeError(f"{failures} of {len(bodies)} requests to {route} failed")
    done = await waiting
    CPU.update({name: used - before[name] for name, used in cpu_now().items()})
    return rows / (done - started), len(bodies) / seconds


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def wait_health(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"aiops api exited:\n{tail(log)}")
            try:
                if (await client.get(url + "/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("aiops api did not become healthy")


async def bench(alerts: int, raw_events: int, connections: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-intake-"))
    stack = DevStack(
        home,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        postgres_port=free_port(),
        redis_port=free_port(),
    )
    processes: list[subprocess.Popen[bytes]] = []
    print(f"starting servers under {home} ...", flush=True)
    try:
        state = (await stack.up()).state
        urls = {name: svc.url for name, svc in state.services.items()}
        await migrate(urls["postgres"], 384)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
        env.update(
            {
                "DATABASE_URL": urls["postgres"],
                "REDIS_URL": urls["redis"],
                "TEMPORAL_ADDRESS": urls["temporal"],
                "AIOPS_HOME": str(home),
                "AIOPS_JWT_SECRET": SECRET,
                "AIOPS_TRACING": "off",
                "AIOPS_LOG_LEVEL": "WARNING",
                # the bench's streams are written as a dev stack's services write theirs
                "AIOPS_EVENT_TRUST": "open",
                "AIOPS_LISTENER_STREAMS": "events:api",
            }
        )
        log = home / "bench.log"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        processes.append(start([str(AIOPS), "api", "--port", str(port)], env, log))
        processes.append(
            start(
                [sys.executable, "-m", "workers.listener", "--no-incidents", "--consumer", "bench"],
                env,
                log,
            )
        )
        await wait_health(base, processes[0], log)
        WATCHED.update(
            {"api": psutil.Process(processes[0].pid), "listener": psutil.Process(processes[1].pid)}
        )
        token = issue_token(SECRET, "bench", [Role.OPERATOR], timedelta(hours=2))
        batches = max(1, alerts // BATCH)
        alerts = batches * BATCH
        print(
            f"{alerts} alerts in {batches} Alertmanager notifications of {BATCH}; "
            f"{raw_events} raw events; {connections} keep-alive connections",
            flush=True,
        )
        print(f"machine: {os.cpu_count()} cores; servers, API, listener and client share them\n")
        # warm up both routes (imports, pools, the listener's group)
        warm = [notification(batches + 1)]
        await timed(
            base,
            "/intake/alertmanager",
            token,
            warm,
            1,
            rows=BATCH,
            source="alertmanager",
            database_url=urls["postgres"],
        )
        await timed(
            base,
            "/events",
            token,
            [raw_event(-1)],
            1,
            rows=1,
            source="bench-raw",
            database_url=urls["postgres"],
        )
        bodies = [notification(b) for b in range(batches)]
        intake_rate, intake_requests = await timed(
            base,
            "/intake/alertmanager",
            token,
            bodies,
            connections,
            rows=alerts + BATCH,
            source="alertmanager",
            database_url=urls["postgres"],
        )
        intake_cpu = dict(CPU)
        raw_bodies = [raw_event(i) for i in range(raw_events)]
        raw_rate, raw_requests = await timed(
            base,
            "/events",
            token,
            raw_bodies,
            connections,
            rows=raw_events + 1,
            source="bench-raw",
            database_url=urls["postgres"],
        )
        print("stored in the events table (first request to last committed row)")
        print(
            f"  POST /intake/alertmanager, {BATCH} alerts a request: {intake_rate:>9,.0f} "
            f"alerts/s ({intake_requests:,.1f} requests/s answered)   goal 5,000: "
            f"{intake_rate / 5000:.1f}x"
        )
        print(
            f"  POST /events, one event a request (baseline): {raw_rate:>9,.0f} events/s "
            f"({raw_requests:,.0f} requests/s answered)"
        )
        print(f"  ratio intake / raw POST /events: {intake_rate / raw_rate:.1f}x")
        print("CPU of the server processes (user + system)")
        for name in WATCHED:
            print(
                f"  {name:<9} intake {intake_cpu[name] / alerts * 1e6:>7.0f} us/alert   "
                f"raw {CPU[name] / raw_events * 1e6:>7.0f} us/event"
            )
        print(f"\n(run at {datetime.now(UTC).isoformat(timespec='seconds')})")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.down(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(bench(args.alerts, args.events, args.connections))


if __name__ == "__main__":
    main()
