"""`aiops monitor`: the monitor agent process.

It keeps one Temporal Schedule per registered service (`probe-<service>`; the probes
themselves run in `aiops worker`), runs the metric anomaly detector on its own consumer
group, and heartbeats in the agents registry. SIGTERM or Ctrl-C finishes the batch in
hand, snapshots the baselines and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Annotated

import asyncpg
import redis.asyncio as aioredis
import typer
from pydantic import BaseModel
from temporalio.client import Client

from aiops.config import Settings, get_settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url, resolve_redis_url
from aiops.events.mesh import EventMesh
from aiops.events.retry import retrying
from aiops.monitor.anomaly_consumer import (
    AnomalyMonitor,
    AnomalyStats,
    anomaly_monitor_from_settings,
)
from aiops.monitor.limits import LimitsCache, LimitsStore, default_limits
from aiops.monitor.schedules import ProbeDefaults, SyncReport, sync_schedules
from aiops.registry.agents import AgentDefinition, AgentHealth, AgentRegistry

log = logging.getLogger("aiops.monitor")

Echo = Callable[[str], None]


class MonitorSummary(BaseModel):
    agent_id: str
    syncs: int = 0
    last_sync: SyncReport | None = None
    sync_errors: int = 0
    anomalies: int = 0
    recoveries: int = 0
    samples: int = 0


def default_agent_id() -> str:
    # stable across restarts: the agents row is reused rather than piling up, and the
    # anomaly consumer (same name) takes back the entries it held when it stopped
    return f"monitor@{socket.gethostname()}"


async def run_monitor(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    probes: bool = True,
    anomalies: bool = True,
    once: bool = False,
    agent_id: str | None = None,
    client: Client | None = None,
    echo: Echo = typer.echo,
) -> MonitorSummary:
    """Run until stop is set (SIGTERM/SIGINT when not given); with once, sync and return."""
    stop = stop or (asyncio.Event() if once else _stop_on_signals(echo))
    pool = await retrying(
        lambda: create_pool(resolve_database_url(settings), max_size=4), "connecting to PostgreSQL"
    )
    redis = aioredis.Redis.from_url(
        resolve_redis_url(settings),
        socket_timeout=settings.listener_block_ms / 1000 + 15,
        socket_connect_timeout=5,
    )
    mesh = EventMesh(
        redis,
        maxlen=settings.events_maxlen,
        max_event_bytes=settings.events_max_payload_bytes,
        dead_letter_stream=settings.dead_letter_stream,
    )
    limits = LimitsCache(LimitsStore(pool, default_limits(settings)))
    agents = AgentRegistry(pool)
    summary = MonitorSummary(agent_id=agent_id or default_agent_id())
    heartbeat_s = min(30.0, settings.monitor_sync_interval_s)
    capabilities = [
        c for c, on in (("health_probe", probes), ("anomaly_detection", anomalies)) if on
    ]
    try:
        await limits.current()
        if probes and client is None:
            from aiops.temporal_client import connect

            client = await connect(settings, "aiops-monitor")
        defaults = ProbeDefaults.from_settings(settings)
        if once:
            if client is not None:
                await _sync(client, pool, defaults, summary, echo)
            return summary
        await agents.register(
            AgentDefinition(
                id=summary.agent_id,
                kind="monitor",
                capabilities=capabilities,
                heartbeat_interval_s=heartbeat_s,
                metadata={"pid": os.getpid(), "host": socket.gethostname()},
            )
        )
        detector: AnomalyMonitor | None = None
        tasks: list[asyncio.Task[object]] = []
        if anomalies:
            detector = anomaly_monitor_from_settings(
                settings, redis, mesh, consumer=summary.agent_id, limits=limits
            )
            tasks.append(asyncio.create_task(detector.run(stop)))
        echo(
            f"monitor {summary.agent_id}: probes {'on' if probes else 'off'} "
            f"(sync every {settings.monitor_sync_interval_s:g} s), anomaly detector "
            f"{'on ' + settings.anomaly_streams if anomalies else 'off'}"
        )
        while not stop.is_set():
            if client is not None:
                await _sync(client, pool, defaults, summary, echo)
            stats = detector.stats if detector is not None else AnomalyStats()
            current = limits.last
            echo(
                f"monitor: {summary.last_sync.line() if summary.last_sync else 'no probes'}; "
                f"anomalies: {stats.line()}; limits max_agents={current.max_agents} "
                f"anomaly_cache_size={current.anomaly_cache_size}"
            )
            await _heartbeat(agents, summary.agent_id, "healthy", stats)
            stopping = asyncio.ensure_future(stop.wait())
            # wake on stop, at the next sync, or at once if the detector died
            await asyncio.wait(
                {stopping, *tasks},
                timeout=settings.monitor_sync_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            stopping.cancel()
            for task in tasks:
                failure = task.exception() if task.done() else None
                if failure is not None:
                    await _heartbeat(agents, summary.agent_id, "unhealthy", stats)
                    raise failure
        for task in tasks:
            await task
        if detector is not None:
            summary.anomalies = detector.stats.anomalies
            summary.recoveries = detector.stats.recoveries
            summary.samples = detector.stats.samples
        await _heartbeat(agents, summary.agent_id, "stopped", detector.stats if detector else None)
        echo(f"monitor {summary.agent_id} stopped")
        return summary
    finally:
        await redis.aclose()
        await pool.close()


async def _sync(
    client: Client,
    pool: asyncpg.Pool,
    defaults: ProbeDefaults,
    summary: MonitorSummary,
    echo: Echo,
) -> None:
    try:
        report = await sync_schedules(client, pool, defaults)
    except Exception as error:  # Temporal away: keep detecting anomalies, try next time
        summary.sync_errors += 1
        log.warning("syncing probe schedules failed: %s", error)
        return
    summary.syncs += 1
    summary.last_sync = report
    for schedule_id in report.created:
        echo(f"monitor: created schedule {schedule_id}")
    for schedule_id in report.updated:
        echo(f"monitor: updated schedule {schedule_id}")
    for schedule_id in report.deleted:
        echo(f"monitor: deleted schedule {schedule_id} (service deregistered)")


async def _heartbeat(
    agents: AgentRegistry, agent: str, health: AgentHealth, stats: AnomalyStats | None
) -> None:
    detail = {"anomalies": stats.anomalies, "samples": stats.samples} if stats else {}
    try:
        await agents.heartbeat(agent, health, detail)
    except Exception as error:  # a missed heartbeat shows as stale; not worth dying for
        log.warning("heartbeat failed: %s", error)


def _stop_on_signals(echo: Echo) -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            echo(f"monitor: second {name}: exiting now")
            if main is not None:
                main.cancel()
            return
        echo(f"monitor: {name}: finishing the batch in hand, then exiting")
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


def monitor(
    once: Annotated[bool, typer.Option(help="sync the probe schedules once and exit")] = False,
    probes: Annotated[
        bool, typer.Option("--probes/--no-probes", help="keep a probe schedule per service")
    ] = True,
    anomalies: Annotated[
        bool, typer.Option("--anomalies/--no-anomalies", help="run the metric anomaly detector")
    ] = True,
    agent_id: Annotated[
        str | None,
        typer.Option(help="name in the agents registry and the consumer group [monitor@host]"),
    ] = None,
) -> None:
    """The monitor agent: probe schedules per registered service and the anomaly detector.

    Probes run in `aiops worker`; this keeps their schedules in step with the registry
    every AIOPS_MONITOR_SYNC_INTERVAL_S and reads metric events on its own consumer group
    (AIOPS_ANOMALY_GROUP). `aiops limits set` changes max_agents and anomaly_cache_size
    while it runs. SIGTERM finishes the batch in hand and exits.
    """
    from aiops.logging_setup import configure_logging

    settings = get_settings()
    configure_logging(settings)
    summary = asyncio.run(
        run_monitor(settings, probes=probes, anomalies=anomalies, once=once, agent_id=agent_id)
    )
    if once and summary.last_sync is not None:
        typer.echo(f"probe schedules: {summary.last_sync.line()}")
    elif once:
        typer.echo("probe schedules: not synced (see the warning above)")
