"""The demo, end to end, in one process: the worker, the listener and the monitor run here
as tasks, the bookmark service as a child process under aiops's process adapter."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from pydantic import BaseModel
from temporalio.client import Client

from aiops.actions.process import ProcessAdapter
from aiops.audit import AuditLog, Checkpoint, audit_keys
from aiops.auth.approvals import ApprovalSigner
from aiops.auth.keys import approval_key
from aiops.config import Settings
from aiops.db.pool import create_pool
from aiops.embeddings import get_embedder
from aiops.endpoints import Endpoints
from aiops.knowledge import KnowledgeGraph
from aiops.knowledge.importer import import_lines
from aiops.modes import ModeStore
from aiops.monitor.schedules import ProbeDefaults, sync_schedules
from aiops.registry import ServiceRegistry
from aiops.registry.secrets import load_fernet
from aiops.temporal_client import connect
from workers.commands.audit import anchor_file
from workers.commands.monitor import run_monitor
from workers.demo.scenarios import Scenario
from workers.demo.target import BookmarkTarget, demo_options
from workers.demo.watch import IncidentWatcher, follow
from workers.listener import run_listener
from workers.worker import running_worker

Echo = Callable[[str], None]
KNOWLEDGE = Path(__file__).resolve().parents[2] / "examples" / "knowledge"
COOL_DOWN_S = 3.0
# the shipped policy, but every fault acts on the one bookmark-api within minutes
DEMO_POLICY = """\
# aiops demo: the shipped policy with a rate limit that lets six faults act on one service
rate_limit:
  max_actions: 30
  window_s: 600
"""


class Outcome(BaseModel):
    scenario: str
    expected: str
    outcome: str
    ok: bool
    incidents: list[str]
    plan: str | None = None
    seconds: float
    proof: str
    would_run: list[str] = []  # shadow: each step aiops would have run, with its verdict


class DemoOptions(BaseModel):
    approve_after_s: float | None = 3.0
    stream_prefix: str = "events"
    scenario_timeout_s: float = 90.0
    shadow: bool = False  # the service in shadow mode: plan and record, run nothing


def demo_settings(settings: Settings, endpoints: Endpoints, home: Path, prefix: str) -> Settings:
    policy = home / "demo" / "policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(DEMO_POLICY)
    return settings.model_copy(
        update={
            "database_url": endpoints.database_url,
            "redis_url": endpoints.redis_url,
            "temporal_address": endpoints.temporal_address,
            "temporal_namespace": endpoints.temporal_namespace,
            "listener_streams": f"{prefix}:*",
            "anomaly_streams": f"{prefix}:*",
            "monitor_stream": f"{prefix}:monitor",
            "listener_block_ms": 200,
            "monitor_probe_interval_s": 1.0,
            "monitor_probe_timeout_s": 2.0,
            # down for 1.5 s (the third failed probe) before it is reported: the service's own
            # error report comes first, and the failed probe joins that incident
            "monitor_unhealthy_after_s": 1.5,
            "monitor_sync_interval_s": 2.0,
            "policy_file": policy,
            # the embedded stack is dev mode, whatever the URLs above make it look like: the
            # printed `temporal workflow signal` approves, and the service's stream needs no
            # producer account (both stay as set when AIOPS_APPROVALS/EVENT_TRUST are given)
            "approvals": settings.approvals or "open",
            "event_trust": settings.event_trust or "open",
            # the demo's output is its progress lines; spans would drown them
            "tracing": "off",
        }
    )


async def seed_knowledge(kg: KnowledgeGraph, echo: Echo) -> None:
    for path in sorted(KNOWLEDGE.glob("*.jsonl")):
        report = await import_lines(kg, path.read_text().splitlines())
        echo(f"    {path.name}: {report.imported} problems ({len(report.errors)} bad lines)")


async def anchor_audit(pool: asyncpg.Pool, settings: Settings, echo: Echo) -> None:
    """Checkpoint the audit log's head as `aiops audit anchor` does, so `aiops audit verify`
    right after the demo checks what it wrote against a checkpoint."""
    anchors = anchor_file(settings)
    made = await AuditLog(pool, audit_keys(settings)).checkpoint(anchors.latest())
    if isinstance(made, Checkpoint):
        anchors.append(made)
        echo(f"==> audit log checkpointed at row {made.seq} (aiops audit verify checks it)")
    else:
        echo(f"==> audit log NOT checkpointed: row {made.broken_seq}: {made.reason}")


@contextlib.asynccontextmanager
async def background(settings: Settings, client: Client) -> AsyncIterator[Background]:
    """Worker and listener now, the monitor when asked; all stopped (batch in hand
    finished) on the way out."""
    stop = asyncio.Event()
    async with running_worker(settings, client):
        running = Background(settings, client, stop)
        running.tasks.append(
            asyncio.create_task(
                run_listener(settings, consumer="demo", cool_down_s=COOL_DOWN_S, stop=stop)
            )
        )
        try:
            yield running
        finally:
            stop.set()
            await asyncio.gather(*running.tasks, return_exceptions=True)


@dataclass
class Background:
    settings: Settings
    client: Client
    stop: asyncio.Event
    tasks: list[asyncio.Task[object]] = field(default_factory=list)

    def start_monitor(self) -> None:
        # only once the service answers: a probe of a process still starting would report
        # it down and open an incident about the demo's own start-up
        self.tasks.append(
            asyncio.create_task(
                run_monitor(self.settings, stop=self.stop, client=self.client, echo=lambda _: None)
            )
        )


# an incident that ends like this means aiops did harm or stopped half-way: never "as expected"
_BAD: frozenset[str | None] = frozenset({"failed", "refused", "escalated", "unverified"})


def _expected_met(scenario: Scenario, watcher: IncidentWatcher, shadow: bool) -> bool:
    """The expected outcome happened and no incident of the fault went wrong (a second
    symptom that escalated as unknown is fine; a failed or refused one is not; in shadow,
    anything that acted is)."""
    outcomes = {s.outcome for s in watcher.resolved()}
    expect = scenario.expected(shadow)
    bad = _BAD if expect == "compensated" else _BAD | {"compensated"}
    if shadow:
        bad |= {"healed", "compensated", "rejected"}
    return expect in outcomes and not outcomes & bad


def _would_run(watcher: IncidentWatcher) -> list[str]:
    steps = [
        f"step {r.step}: {r.action.action_type} on {r.action.target}"
        + (f" ({r.decision.verdict})" if r.decision else "")
        for s in watcher.resolved()
        if s.healing_result is not None
        for r in s.healing_result.steps
        if r.status == "would_run"
    ]
    return list(dict.fromkeys(steps))


async def run_scenario(
    scenario: Scenario,
    target: BookmarkTarget,
    client: Client,
    options: DemoOptions,
    echo: Echo,
    ui_url: str | None,
    namespace: str,
    signer: ApprovalSigner | None = None,
) -> Outcome:
    echo("")
    echo(f"==> {scenario.name}: {scenario.title}")
    since = datetime.now(UTC)
    started = time.monotonic()
    target.pid_before_fault = (await target.wait_healthy(30.0)).get("pid")
    echo(f"  [{scenario.name}] fault      {await scenario.trigger(target)}")
    watcher = IncidentWatcher(
        client, echo, scenario.name, options.approve_after_s, ui_url, namespace, signer
    )
    met = await follow(
        watcher,
        since,
        lambda w: (
            _expected_met(scenario, w, options.shadow)
            and bool(w.followed)
            and all(i.status is not None and i.status.resolved for i in w.followed.values())
        ),
        options.scenario_timeout_s,
    )
    seconds = time.monotonic() - started
    check = scenario.proof
    if options.shadow and scenario.shadow_proof is not None:
        check = scenario.shadow_proof
    try:
        proof = await check(target)
        proven = True
    except (AssertionError, TimeoutError, OSError, httpx.HTTPError, KeyError) as error:
        proof, proven = f"not shown: {error}", False
    echo(f"  [{scenario.name}] {'proof':<10} {proof}")
    if scenario.cleanup is not None:
        await scenario.cleanup(target)
    if options.shadow and scenario.shadow_fix is not None:
        echo(f"  [{scenario.name}] {'by hand':<10} the fault is fixed by hand (aiops only watched)")
        await scenario.shadow_fix(target)
    # a new incident of the same problem must not fold into this one's cool-down
    await follow(watcher, since, lambda w: w.all_closed(), COOL_DOWN_S + 30)
    resolved = watcher.resolved()
    outcome = ", ".join(sorted({s.outcome or "?" for s in resolved})) or "no incident"
    plans = [s.plan.description for s in resolved if s.plan is not None]
    return Outcome(
        scenario=scenario.name,
        expected=scenario.expected(options.shadow),
        outcome=outcome,
        ok=met and proven,
        incidents=list(watcher.followed),
        plan=plans[0] if plans else None,
        seconds=round(seconds, 1),
        proof=proof,
        would_run=_would_run(watcher),
    )


async def run_demo(
    settings: Settings,
    endpoints: Endpoints,
    scenarios: list[Scenario],
    options: DemoOptions,
    echo: Echo,
    ui_url: str | None,
    keep_running: Callable[[], asyncio.Event] | None = None,
    report: Callable[[list[Outcome]], None] | None = None,
) -> list[Outcome]:
    home = settings.home_dir
    settings = demo_settings(settings, endpoints, home, options.stream_prefix)
    pool = await create_pool(endpoints.database_url, max_size=5)
    registry = ServiceRegistry(pool, load_fernet(settings))
    client = await connect(settings, "aiops-demo")
    target = BookmarkTarget(
        demo_options(home, endpoints.redis_url, options.stream_prefix),
        registry,
        ProcessAdapter(registry, home / "logs" / "services"),
    )
    try:
        echo("==> seeding the knowledge graph from examples/knowledge/")
        kg = KnowledgeGraph(pool, get_embedder(settings), settings.similarity_threshold)
        await seed_knowledge(kg, echo)
        echo("==> starting the worker, the listener and the monitor")
        async with background(settings, client) as running:
            record = await target.start()
            pid = record.process.pid if record.process else "?"
            echo(f"==> bookmark-api is up at {target.options.endpoint} (pid {pid}), registered")
            if options.shadow:
                # the demo's service only: other services keep the mode they have
                await ModeStore(pool).set(
                    target.name, "shadow", "aiops-demo", "aiops demo --shadow", via="demo"
                )
                echo(f"==> {target.name} is in shadow mode: aiops plans and records, runs nothing")
            running.start_monitor()
            results = [
                await run_scenario(
                    s,
                    target,
                    client,
                    options,
                    echo,
                    ui_url,
                    endpoints.temporal_namespace,
                    ApprovalSigner(approval_key(settings)),
                )
                for s in scenarios
            ]
            await anchor_audit(pool, settings, echo)
            if report is not None:
                report(results)
            if keep_running is not None:
                echo("")
                echo("everything stays up: explore the Web UI; Ctrl-C stops what the demo started")
                await keep_running().wait()
        return results
    finally:
        if options.shadow:
            await ModeStore(pool).clear(target.name, "aiops-demo", via="demo")
        await target.stop()
        await registry.deregister(target.name)
        # its probe schedule goes with it, or the next run would probe a dead port
        with contextlib.suppress(Exception):
            await sync_schedules(client, pool, ProbeDefaults.from_settings(settings))
        await pool.close()
