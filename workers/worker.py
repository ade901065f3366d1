"""`aiops worker`: the Temporal worker for every aiops workflow and activity."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.healing import HealingActivities
from aiops.actions.base import Adapter
from aiops.actions.executor import ActionExecutor
from aiops.actions.http import HttpAdapter
from aiops.actions.process import ProcessAdapter
from aiops.actions.redis_commands import RedisAdapter
from aiops.actions.simulated import SimulatedAdapter
from aiops.audit import AuditLog
from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.endpoints import resolve_database_url
from aiops.registry import ServiceRegistry
from aiops.registry.secrets import load_fernet
from aiops.temporal_client import connect
from workflows import HealingWorkflow, IncidentWorkflow

log = logging.getLogger(__name__)


def healing_activities(settings: Settings, pool: asyncpg.Pool) -> HealingActivities:
    registry = ServiceRegistry(pool, load_fernet(settings))
    adapters: dict[str, Adapter] = {
        "process": ProcessAdapter(registry, settings.home_dir / "logs" / "services"),
        "http": HttpAdapter(),
        "redis": RedisAdapter(),
        "simulated": SimulatedAdapter(),
    }
    executor = ActionExecutor(pool, registry, adapters)
    return HealingActivities(pool, executor, registry, AuditLog(pool))


def activities_of(*holders: object) -> list[Any]:
    """Every @activity.defn method of the given activity classes."""
    found = []
    for holder in holders:
        for name in dir(type(holder)):
            method = getattr(holder, name)
            if hasattr(method, "__temporal_activity_definition"):
                found.append(method)
    return found


@asynccontextmanager
async def running_worker(settings: Settings, client: Client) -> AsyncIterator[Worker]:
    pool = await create_pool(resolve_database_url(settings), max_size=20)
    try:
        worker = Worker(
            client,
            task_queue=settings.temporal_task_queue,
            # Diagnosis and learning join when the knowledge-graph activities land; until then
            # an incident records observations and healing runs plans given to it.
            workflows=[IncidentWorkflow, HealingWorkflow],
            activities=activities_of(healing_activities(settings, pool)),
            max_concurrent_activities=settings.worker_max_activities,
            max_concurrent_workflow_tasks=settings.worker_max_workflow_tasks,
            graceful_shutdown_timeout=timedelta(seconds=30),
        )
        async with worker:
            yield worker
    finally:
        await pool.close()


async def run(settings: Settings) -> None:
    client = await connect(settings, "aiops-worker", serve_metrics=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(settings, client):
        log.info(
            "worker polling task queue %s on %s (namespace %s)",
            settings.temporal_task_queue,
            client.service_client.config.target_host,
            settings.temporal_namespace,
        )
        await stop.wait()
        log.info("stopping: finishing activities in hand (up to 30 s)")
