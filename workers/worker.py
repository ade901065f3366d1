"""`aiops worker`: the Temporal worker for every aiops workflow and activity."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg
from cryptography.fernet import Fernet
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agents import AgentActivities
from activities.audit import AuditActivities
from activities.healing import HealingActivities
from activities.incident_context import IncidentContextActivities
from activities.knowledge import KnowledgeActivities, PatternLearningActivities
from activities.modes import ModeActivities
from activities.monitor import MonitorActivities
from activities.notify import NotifyActivities
from activities.silences import SilenceActivities
from aiops.actions.base import Adapter
from aiops.actions.executor import ActionExecutor
from aiops.actions.guard import ActionGuard
from aiops.actions.http import HttpAdapter
from aiops.actions.process import ProcessAdapter
from aiops.actions.redis_commands import RedisAdapter
from aiops.actions.simulated import SimulatedAdapter
from aiops.agents.builtin import BUILTIN_IDS, builtin_agents
from aiops.agents.loader import load_custom_agents
from aiops.agents.presence import AgentPresence
from aiops.audit import AnchorFile, AuditLog, audit_keys
from aiops.audit.records import record_policy
from aiops.auth.approvals import ApprovalSigner
from aiops.auth.keys import approval_key
from aiops.config import Settings
from aiops.db.pool import create_lock_pool, create_pool, sized
from aiops.diagnosis.llm import RootCauseWriter, root_cause_writer
from aiops.diagnosis.tools import ToolPlanner
from aiops.embeddings import get_embedder
from aiops.endpoints import resolve_database_url
from aiops.events.mesh import EventMesh
from aiops.knowledge import KnowledgeGraph
from aiops.monitor.limits import (
    BUILTIN_LIMITS,
    LimitsCache,
    LimitsStore,
    RuntimeLimits,
    default_limits,
)
from aiops.patterns.learning import PatternEvolver
from aiops.policy import PolicyFile
from aiops.registry import ServiceRegistry
from aiops.registry.secrets import load_fernet
from aiops.temporal_client import connect
from aiops.tools.store import ToolStore
from workers.commands.audit import start_anchor_workflow
from workflows import ALL_WORKFLOWS
from workflows.audit import AuditAnchorWorkflow

log = logging.getLogger(__name__)


def activity_holders(
    pool: asyncpg.Pool,
    fernet: Fernet,
    service_logs: Path,
    kg: KnowledgeGraph,
    mesh: EventMesh,
    policy_file: Path | None = None,
    limits: RuntimeLimits | None = None,
    root_cause: RootCauseWriter | None = None,
    agents: AgentPresence | None = None,
    agent_timeout_s: float = 5.0,
    pattern_min_outcomes: int = 10,
    *,
    approval_key: bytes | None = None,
    approvals: Literal["open", "signed"] = "open",
    simulated: bool = False,
    client: Client | None = None,
    settings: Settings | None = None,
    lock_pool: asyncpg.Pool | None = None,
) -> list[object]:
    """Every activity class, wired to its clients; the worker and the tests share this.

    agents: the agent set (registered and heartbeating when the caller started it); the
    built-in agents alone when None. The diagnosis asks agents only when a custom one is in
    the set. approval_key: what signed approvals are checked with (None: a random one, so
    nothing signed elsewhere counts). simulated: add the simulated adapter (tests,
    benchmarks; AIOPS_SIMULATED_ADAPTER=1). lock_pool: where actions hold their locks
    (aiops.db.pool.create_lock_pool); None: the main pool."""
    if agents is None:
        agents = AgentPresence(pool, builtin_agents(kg, policy_file), timeout_s=agent_timeout_s)
    custom = any(a.agent_id not in BUILTIN_IDS for a in agents.agents)
    registry = ServiceRegistry(pool, fernet)
    adapters: dict[str, Adapter] = {
        "process": ProcessAdapter(registry, service_logs),
        "http": HttpAdapter(),
        "redis": RedisAdapter(),
    }
    if simulated:
        adapters["simulated"] = SimulatedAdapter()
    signer = ApprovalSigner(approval_key or os.urandom(32))
    # one policy file for the whole worker: what plans are made with is what acts is checked by
    policy = PolicyFile(policy_file)
    guard = ActionGuard(pool, registry, policy, signer, approvals, frozenset(adapters))
    executor = ActionExecutor(pool, registry, adapters, guard, lock_pool)
    audit = AuditLog(pool, audit_keys(settings) if settings is not None else None)
    silences = SilenceActivities(pool, registry, audit)
    modes = ModeActivities(pool, client)
    return [
        HealingActivities(pool, executor, registry, audit, signer, approvals, client),
        KnowledgeActivities(
            kg,
            mesh,
            policy,
            root_cause,
            custom,
            LimitsCache(LimitsStore(pool, limits or BUILTIN_LIMITS)),
            ToolPlanner(ToolStore(pool), registry),
        ),
        MonitorActivities(pool, mesh, limits),
        AgentActivities(agents, agent_timeout_s),
        PatternLearningActivities(
            PatternEvolver(pool, mesh=mesh, min_outcomes=pattern_min_outcomes)
        ),
        # AIOPS_NOTIFY_*, AIOPS_PUBLIC_URL: from settings, else the process's own
        NotifyActivities(pool, registry, audit, settings=settings),
        silences,
        modes,
        IncidentContextActivities(silences, modes, policy),
    ]


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
    database_url = resolve_database_url(settings)
    pool = await create_pool(database_url, **sized(settings))
    locks = await create_lock_pool(database_url, settings.worker_max_activities)
    mesh = EventMesh.from_settings(settings)
    kg = KnowledgeGraph(pool, get_embedder(settings), settings.similarity_threshold)
    custom = load_custom_agents(taken=set(BUILTIN_IDS))
    agents = AgentPresence(
        pool,
        [*builtin_agents(kg, settings.policy_file), *custom.agents],
        broken=custom.errors,
        interval_s=settings.agent_heartbeat_s,
        timeout_s=settings.agent_timeout_s,
    )
    holders = activity_holders(
        pool,
        load_fernet(settings),
        settings.home_dir / "logs" / "services",
        kg,
        mesh,
        settings.policy_file,
        default_limits(settings),
        root_cause_writer(settings),
        agents,
        settings.agent_timeout_s,
        settings.pattern_evolve_min_outcomes,
        approval_key=approval_key(settings),
        approvals=settings.approvals_mode,
        simulated=settings.simulated_adapter,
        client=client,
        settings=settings,
        lock_pool=locks,
    )
    keys = audit_keys(settings)
    holders.append(
        AuditActivities(AuditLog(pool, keys), AnchorFile(settings.audit_anchor_path, keys.anchor))
    )
    try:
        try:
            await agents.start()
        except asyncpg.PostgresError as error:
            # the agents' health is for operators; the worker's activities do not need it
            log.warning("agents not registered (%s): run `aiops migrate`", error)
        try:
            await record_policy(AuditLog(pool, keys), settings.policy_file, "aiops-worker")
        except asyncpg.PostgresError as error:
            log.warning("policy in force not audited (%s): run `aiops migrate`", error)
        worker = Worker(
            client,
            task_queue=settings.temporal_task_queue,
            workflows=[*ALL_WORKFLOWS, AuditAnchorWorkflow],
            activities=activities_of(*holders),
            max_concurrent_activities=settings.worker_max_activities,
            max_concurrent_workflow_tasks=settings.worker_max_workflow_tasks,
            graceful_shutdown_timeout=timedelta(seconds=30),
        )
        async with worker:
            yield worker
    finally:
        for holder in holders:
            if isinstance(holder, MonitorActivities):
                await holder.prober.aclose()  # its HTTP client
        await agents.aclose()
        await mesh.aclose()
        await locks.close()
        await pool.close()


async def run(settings: Settings) -> None:
    client = await connect(settings, "aiops-worker", serve_metrics=True)
    if settings.approvals_mode == "open":
        log.warning(
            "AIOPS_APPROVALS=open: any `approve` signal counts, whoever sends it (dev mode); "
            "set AIOPS_APPROVALS=signed before this worker acts on anything that matters"
        )
    if settings.simulated_adapter:
        log.warning(
            "AIOPS_SIMULATED_ADAPTER=1: services registered adapter: simulated act for show"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(settings, client):
        await start_anchor_workflow(client, settings)
        log.info(
            "worker polling task queue %s on %s (namespace %s)",
            settings.temporal_task_queue,
            client.service_client.config.target_host,
            settings.temporal_namespace,
        )
        await stop.wait()
        log.info("stopping: finishing activities in hand (up to 30 s)")
