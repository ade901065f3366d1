"""Operating modes: shadow plans and records but never acts (checked where actions run),
approve-all makes every action wait for a person, a service's own mode wins over the
global one, and the shadow report says what would have run and how incidents ended."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import asyncpg
from aiops_worker import aiops_worker
from cryptography.fernet import Fernet
from known_problems import import_timeout_incident, register_simulated, seed_import_timeout
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from test_healing_attacks import _acts, _ran, _request
from typer.testing import CliRunner

from aiops import search_attributes as sa
from aiops.models.incident import IncidentStatus
from aiops.modes import GLOBAL, ModeStore
from aiops.modes.report import shadow_report
from aiops.notes import NoteStore
from aiops.registry import ServiceRegistry
from aiops.registry.changes import register_audited
from aiops.registry.models import ServiceDefinition
from workers import cli
from workflows.incident import IncidentWorkflow

cli._register()


async def _incident(client: Client, queue: str) -> IncidentStatus:
    fingerprint = uuid.uuid4().hex[:16]
    return await client.execute_workflow(
        IncidentWorkflow.run,
        import_timeout_incident(cool_down_s=1),
        id=f"incident-mode-{fingerprint}",
        task_queue=queue,
        # as the router starts incidents: with the search attributes the report queries
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.FINGERPRINT, fingerprint)]),
    )


async def test_shadow_is_refused_where_actions_run(pool: asyncpg.Pool) -> None:
    await register_simulated(pool, "payments")
    await ModeStore(pool).set("payments", "shadow", "test")
    request = _request("cache_clear", success_probability=1.0)
    outcome = await (await _acts(pool)).execute_action(request)
    assert not outcome.success and "shadow mode" in outcome.detail
    assert not await _ran(pool, request)


async def test_approve_all_makes_an_ordinary_action_wait_for_a_person(
    pool: asyncpg.Pool,
) -> None:
    await register_simulated(pool, "payments")
    await ModeStore(pool).set(GLOBAL, "approve-all", "test")
    request = _request("cache_clear", success_probability=1.0)  # allowed by the policy
    outcome = await (await _acts(pool)).execute_action(request)
    assert not outcome.success and "needs approval" in outcome.detail
    assert not await _ran(pool, request)


async def test_a_shadowed_incident_plans_records_and_runs_nothing(
    temporal_env: WorkflowEnvironment, database_url: str, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with aiops_worker(client, queue, database_url, redis_url) as kg:
        _, solution_id = await seed_import_timeout(kg)
        modes = ModeStore(kg.pool)
        await modes.set(GLOBAL, "shadow", "test", "first week")
        shadowed = await _incident(client, queue)
        # the on-call engineer fixed it by hand and said so
        await NoteStore(kg.pool).add(
            shadowed.fingerprint, "alice", "restarted the importer by hand", resolved=True
        )
        await modes.set("import-service", "act", "test", "trusted now")  # the service wins
        acted = await _incident(client, queue)
        stats = await kg.solution_stats(solution_id)
        for _ in range(50):  # visibility is eventually consistent
            report = await shadow_report(client, kg.pool, timedelta(hours=1))
            if any(i.workflow_id == shadowed.fingerprint for i in report.incidents):
                break
            await asyncio.sleep(0.2)
        searched: list[str] = []
        for _ in range(50):
            searched = [
                e.id
                async for e in client.list_workflows(
                    f"AiopsMode = 'shadow' AND TaskQueue = '{queue}'"
                )
            ]
            if searched:
                break
            await asyncio.sleep(0.2)
        executions = await kg.pool.fetch(
            "SELECT workflow_id FROM action_executions WHERE workflow_id LIKE $1",
            f"{shadowed.fingerprint}%",
        )
        would = await kg.pool.fetch(
            "SELECT decision FROM audit_log WHERE action = 'would-run' AND workflow_id LIKE $1",
            "incident-mode-%-healing-%",
        )
    assert shadowed.outcome == "shadow"
    # the mode is shown: status, memo summary, and the AiopsMode search attribute
    assert (shadowed.mode, acted.mode) == ("shadow", "act")
    assert "[shadow]" in shadowed.summary() and "[" not in acted.summary()
    assert searched == [shadowed.fingerprint]  # hand-started: its id is the fingerprint
    assert shadowed.healing_result is not None
    assert [s.status for s in shadowed.healing_result.steps] == ["would_run"]
    step = shadowed.healing_result.steps[0]
    assert step.decision is not None and step.decision.verdict == "allow"
    assert step.outcome is None  # no adapter was called
    assert acted.outcome == "healed"
    # learning counted the healed run only
    assert (stats.attempt_count, stats.success_count) == (1, 1)
    assert not executions and [r["decision"] for r in would] == ["allow"]
    # other tests' shadowed incidents share the server: this one is found by its id
    [entry] = [i for i in report.incidents if i.workflow_id == shadowed.fingerprint]
    assert entry.would_run[0].action == "cache_clear on import-service"
    assert entry.ended_on_its_own is False
    assert entry.ended == "resolved by alice: restarted the importer by hand"
    assert f"{len(report.incidents)} shadowed incident(s)" in report.line()


def test_mode_cli_sets_shows_clears_and_audits(cli_db: str) -> None:
    runner = CliRunner()
    done = runner.invoke(cli.app, ["mode", "set", "shadow", "--reason", "first week"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli.app, ["mode", "set", "act", "--service", "billing"])
    assert done.exit_code == 0, done.output
    assert runner.invoke(cli.app, ["mode", "set", "yolo"]).exit_code != 0
    shown = runner.invoke(cli.app, ["mode", "show", "--json"])
    rows = json.loads(shown.stdout)
    assert [(r["scope"], r["mode"]) for r in rows] == [(GLOBAL, "shadow"), ("billing", "act")]
    assert runner.invoke(cli.app, ["mode", "clear", "--service", "billing"]).exit_code == 0
    assert runner.invoke(cli.app, ["mode", "clear", "--service", "billing"]).exit_code != 0

    async def audited() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(cli_db)
        try:
            found = await conn.fetch(
                "SELECT target, decision FROM audit_log WHERE action = 'mode' ORDER BY seq"
            )
        finally:
            await conn.close()
        return [(r["target"], r["decision"]) for r in found]

    assert asyncio.run(audited()) == [
        (GLOBAL, "shadow"),
        ("billing", "act"),
        ("billing", "cleared"),
    ]


async def test_a_service_definition_sets_its_mode_and_leaves_it_when_silent(
    pool: asyncpg.Pool,
) -> None:
    registry = ServiceRegistry(pool, Fernet(Fernet.generate_key()))
    definition = ServiceDefinition(name="ledger", endpoint="http://127.0.0.1:9", mode="shadow")
    record, _ = await register_audited(pool, registry, definition, "alice", "api")
    modes = ModeStore(pool)
    assert record.mode == "shadow" and await modes.effective("ledger") == "shadow"
    # registering again without a mode (a redeploy) keeps what an operator set
    await register_audited(
        pool, registry, definition.model_copy(update={"mode": None}), "bob", "cli"
    )
    assert await modes.effective("ledger") == "shadow"
    rows = await pool.fetch(
        "SELECT actor, target, decision, details->>'via' AS via FROM audit_log"
        " WHERE action = 'mode' ORDER BY seq"
    )
    assert [tuple(r) for r in rows] == [("alice", "ledger", "shadow", "api")]


def test_note_cli_adds_and_lists_an_incidents_notes(cli_db: str) -> None:
    runner = CliRunner()
    done = runner.invoke(cli.app, ["note", "add", "incident-x", "freed the disk", "--resolved"])
    assert done.exit_code == 0, done.output
    empty = runner.invoke(cli.app, ["note", "add", "incident-x", "  "])
    assert empty.exit_code != 0 and "needs some text" in str(empty.exception)
    shown = runner.invoke(cli.app, ["note", "list", "incident-x", "--json"])
    [note] = json.loads(shown.stdout)
    assert (note["note"], note["resolved"]) == ("freed the disk", True)
