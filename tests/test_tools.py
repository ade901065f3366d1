"""Tool construction on real PostgreSQL: validation refuses what the policy refuses and what
the dry run cannot run, a staging trial acts for real and undoes on failure, repeated
approved sequences are mined into a draft, and admins decide (audited)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiops_worker import EMBEDDER
from cryptography.fernet import Fernet
from known_problems import register_simulated
from typer.testing import CliRunner

from aiops.actions.base import Adapter
from aiops.actions.executor import ActionExecutor
from aiops.actions.guard import ActionGuard
from aiops.actions.simulated import SimulatedAdapter
from aiops.auth.approvals import ApprovalSigner
from aiops.auth.roles import Identity, Role
from aiops.auth.tokens import issue_token
from aiops.knowledge import KnowledgeGraph, ProblemIn
from aiops.policy import PolicyFile
from aiops.registry import ServiceDefinition, ServiceRegistry
from aiops.registry.models import ConfigKey, ReplicaBounds
from aiops.tools import lifecycle
from aiops.tools.builder import ToolBuilder
from aiops.tools.drafting import LlmDrafter
from aiops.tools.models import ToolDraft, ToolRequest, ToolSpec
from aiops.tools.spec import parse_spec
from aiops.tools.store import ToolError, ToolStore
from aiops.tools.trial import TrialApprover
from workers import cli

cli._register()
FERNET = Fernet(Fernet.generate_key())


def tool_builder(
    pool: asyncpg.Pool, *, min_runs: int = 3, drafter: LlmDrafter | None = None
) -> ToolBuilder:
    """As `aiops tools build` makes it on a worker with AIOPS_SIMULATED_ADAPTER=1."""
    registry = ServiceRegistry(pool, FERNET)
    adapters: dict[str, Adapter] = {"simulated": SimulatedAdapter()}
    policy = PolicyFile(None)
    guard = ActionGuard(
        pool, registry, policy, ApprovalSigner(os.urandom(32)), "open", frozenset(adapters)
    )
    executor = ActionExecutor(pool, registry, adapters, guard)
    return ToolBuilder(ToolStore(pool), registry, policy, executor, drafter, min_runs=min_runs)


def spec(steps: list[dict[str, Any]], **extra: Any) -> ToolSpec:
    return ToolSpec.model_validate(
        {"name": "test_tool", "description": "a test tool", "steps": steps, **extra}
    )


async def test_a_tool_with_a_forbidden_step_is_refused_and_cannot_be_approved(
    pool: asyncpg.Pool,
) -> None:
    builder = tool_builder(pool)
    flush = spec(
        [
            {"action_type": "cache_clear", "compensation": "none"},
            {
                "action_type": "execute",
                "parameters": {"command": "FLUSHALL"},
                "compensation": "none",
            },
        ],
        name="clear_everything",
    )
    record = await builder.submit(ToolDraft(spec=flush, origin="manual"), "alice")
    assert record.status == "refused"
    [schema, policy] = record.validation.checks
    assert schema.ok and not policy.ok
    assert "step 2 (execute): data deletion (FLUSHALL) is forbidden" in policy.detail
    with pytest.raises(ToolError, match="validation refused it"):
        await lifecycle.approve(ToolStore(pool), "clear_everything", "admin", version=1)
    # free text choosing a command is refused too: the policy never saw what it will run
    free = spec(
        [
            {
                "action_type": "execute",
                "parameters": {"command": "${command}"},
                "compensation": "none",
            }
        ],
        name="run_anything",
        parameters=[{"name": "command", "type": "string", "default": "MEMORY PURGE"}],
    )
    record = await builder.submit(ToolDraft(spec=free, origin="llm"), "alice")
    assert record.status == "refused"
    assert "free text 'command' decides the command" in (record.validation.refusal() or "")
    # a step that is no registered primitive, and an undo no adapter can do
    made_up = spec([{"action_type": "drop_table"}, {"action_type": "restart"}], name="made_up")
    record = await builder.submit(ToolDraft(spec=made_up, origin="llm"), "alice")
    refusal = record.validation.refusal() or ""
    assert "'drop_table' is not a registered primitive action" in refusal
    assert "step 2: restart cannot be undone" in refusal
    # a fix names the tool as its action: a name that says a forbidden action is refused
    purge = spec([{"action_type": "cache_clear", "compensation": "none"}], name="purge_imports")
    record = await builder.submit(ToolDraft(spec=purge, origin="llm"), "alice")
    assert "the name 'purge_imports' says data deletion" in (record.validation.refusal() or "")
    audited = await pool.fetch(
        "SELECT target, decision FROM audit_log WHERE action = 'tool-draft' ORDER BY seq"
    )
    assert [(r["target"], r["decision"]) for r in audited] == [
        ("clear_everything", "refused"),
        ("run_anything", "refused"),
        ("made_up", "refused"),
        ("purge_imports", "refused"),
    ]


async def test_the_dry_run_refuses_a_step_outside_the_services_bounds(pool: asyncpg.Pool) -> None:
    await register_simulated(pool, "import-service", config_keys=("batch_size",))
    builder = tool_builder(pool)
    tune = spec(
        [
            {
                "action_type": "config_update",
                "parameters": {"key": "import_workers", "value": "${workers}"},
            },
            {"action_type": "cache_clear", "compensation": "none"},
        ],
        name="more_import_workers",
        parameters=[{"name": "workers", "type": "integer", "default": 8}],
    )
    draft = ToolDraft(spec=tune, origin="manual", service="import-service")
    record = await builder.submit(draft, "alice")
    assert record.status == "refused"
    schema, policy, dry = record.validation.checks
    assert schema.ok and policy.ok and not dry.ok
    assert dry.stage == "dry_run"
    assert "step 1 (config_update) refused: import-service declares no config key" in dry.detail
    # the same tool on a key the service declares passes, and undoes step 1 in the dry run
    fixed = tune.model_copy(
        update={
            "steps": [
                tune.steps[0].model_copy(
                    update={"parameters": {"key": "batch_size", "value": "${workers}"}}
                ),
                tune.steps[1],
            ]
        }
    )
    record = await builder.submit(draft.model_copy(update={"spec": fixed}), "alice")
    assert record.status == "proposed", record.validation.refusal()
    assert record.version == 2
    dry = record.validation.checks[2]
    assert "2 step(s) ran on the simulated adapter against import-service" in dry.detail
    assert "1 undone in reverse" in dry.detail
    trial = record.validation.checks[3]
    assert trial.skipped and "no staging service" in trial.detail


async def test_a_staging_trial_acts_for_real_and_undoes_when_a_step_fails(
    pool: asyncpg.Pool,
) -> None:
    registry = ServiceRegistry(pool, FERNET)
    await register_simulated(pool, "import-service", config_keys=("batch_size",))
    await registry.register(
        ServiceDefinition(
            name="import-staging",
            endpoint="http://127.0.0.1:9/import-staging",
            health_check=None,
            config_keys={"batch_size": ConfigKey(type="integer")},
            replicas=ReplicaBounds(min=0, max=2),  # smaller than production (0..10)
            metadata={"adapter": "simulated", "staging": True, "staging_for": "import-service"},
        )
    )

    def steps(replicas: int) -> list[dict[str, Any]]:
        return [
            {
                "action_type": "config_update",
                "parameters": {"key": "batch_size", "value": 50, "success_probability": 1.0},
            },
            {
                "action_type": "scale",
                "parameters": {"replicas": replicas, "success_probability": 1.0},
            },
        ]

    builder = tool_builder(pool)
    alice = TrialApprover(Identity(sub="alice", roles=[Role.ADMIN]))  # open mode: unsigned
    failing = spec(steps(3), name="shrink_import_batches")
    record = await builder.submit(
        ToolDraft(spec=failing, origin="manual", service="import-service"), "mined-by-aiops"
    )
    # scale waits for a person under the default policy: a build approves it for nobody
    assert record.status == "refused"
    trial = record.validation.checks[-1]
    assert trial.stage == "staging_trial" and not trial.ok
    assert trial.detail.startswith(
        "needs a person: on import-staging step 2 (scale): approval needed"
    )
    assert "no step ran" in trial.detail
    assert "`aiops tools trial shrink_import_batches --version 1`" in trial.detail
    assert await pool.fetchval("SELECT count(*) FROM action_executions") == 0
    # an admin who read it runs the trial: their approval lets the guard judge the step
    record = await builder.trial("shrink_import_batches", 1, alice)
    assert (record.version, record.status) == (1, "refused")
    trial = record.validation.checks[-1]
    assert "step 2 (scale) on import-staging: refused: import-staging replicas" in trial.detail
    assert "1 step(s) undone in reverse" in trial.detail
    rows = await pool.fetch(
        "SELECT idempotency_key, status, service FROM action_executions"
        " WHERE workflow_id LIKE 'tool-trial-shrink_import_batches-v1-%' ORDER BY started_at"
    )
    # the guard refused step 2 before any adapter saw it; step 1 was undone
    assert [(r["idempotency_key"].split(":", 1)[1], r["status"]) for r in rows] == [
        ("1", "succeeded"),
        ("1:compensate", "succeeded"),
    ]
    assert {r["service"] for r in rows} == {"import-staging"}  # never production
    passing = spec(steps(2), name="shrink_import_batches", postconditions=[{"kind": "healthy"}])
    record = await builder.submit(
        ToolDraft(spec=passing, origin="manual", service="import-service"), "mined-by-aiops"
    )
    assert (record.version, record.status) == (2, "refused")
    assert "needs a person" in (record.validation.refusal() or "")
    with pytest.raises(ToolError, match="at version 2, not 1"):
        await builder.trial("shrink_import_batches", 1, alice)
    record = await builder.trial("shrink_import_batches", 2, alice)
    assert record.status == "proposed", record.validation.refusal()
    detail = record.validation.checks[-1].detail
    assert "2 step(s) ran on staging service import-staging" in detail
    assert "approved by alice" in detail
    # every trial step is audited: what, where, the verdict, who approved, which version
    audited = await pool.fetch(
        "SELECT actor, action, target, decision, details FROM audit_log"
        " WHERE action LIKE 'tool-trial%' ORDER BY seq"
    )
    assert [
        (
            r["actor"],
            r["action"],
            r["target"],
            r["decision"],
            r["details"].get("version"),
            r["details"].get("step"),
            r["details"].get("approved_by"),
        )
        for r in audited
    ] == [
        ("mined-by-aiops", "tool-trial:scale", "import-staging", "needs-a-person", 1, 2, None),
        ("alice", "tool-trial:config_update", "import-staging", "succeeded", 1, 1, None),
        ("alice", "tool-trial:scale", "import-staging", "failed", 1, 2, None),
        ("alice", "tool-trial-undo:config_update", "import-staging", "succeeded", 1, 1, None),
        ("alice", "tool-trial", "shrink_import_batches", "refused", 1, None, None),
        ("mined-by-aiops", "tool-trial:scale", "import-staging", "needs-a-person", 2, 2, None),
        ("alice", "tool-trial:config_update", "import-staging", "succeeded", 2, 1, None),
        (
            "alice",
            "tool-trial:scale",
            "import-staging",
            "succeeded",
            2,
            2,
            "alice (unsigned, AIOPS_APPROVALS=open)",
        ),
        ("alice", "tool-trial", "shrink_import_batches", "proposed", 2, None, None),
    ]
    assert {r["details"]["tool"] for r in audited if ":" in r["action"]} == {
        "shrink_import_batches"
    }


async def _recorded_run(
    pool: asyncpg.Pool,
    kg: KnowledgeGraph,
    problem_id: str,
    steps: list[dict[str, Any]],
    *,
    outcome: str = "healed",
    approver: str | None = "alice",
) -> None:
    """What one incident leaves behind: its healing run's actions and its learning insight."""
    incident = f"incident-{uuid.uuid4().hex[:12]}"
    run = uuid.uuid4().hex[:8]
    for number, action in enumerate(steps, 1):
        data = {"approved_by": approver} if approver else {}
        await pool.execute(
            "INSERT INTO action_executions (idempotency_key, workflow_id, step, adapter,"
            " action_type, target, service, action, status, result)"
            " VALUES ($1, $2, $3, 'simulated', $4, $5, $5, $6, 'succeeded', $7)",
            f"{incident}-healing-{run}:{number}",
            f"{incident}-healing-{run}",
            str(number),
            action["action_type"],
            action["target"],
            action,
            {"success": True, "detail": "done", "data": data},
        )
    await kg.add_insight(f"insight:{incident}-learning-{run}", problem_id, None, outcome, "x")


async def test_repeated_approved_sequences_are_mined_into_a_typed_draft(
    pool: asyncpg.Pool,
) -> None:
    await register_simulated(pool, "import-service", config_keys=("batch_size",))
    kg = KnowledgeGraph(pool, EMBEDDER)
    problem = await kg.add_problem(
        ProblemIn(description="imports stall on large files", context={"service": "import-service"})
    )

    def sequence(batch: int) -> list[dict[str, Any]]:
        return [
            {
                "action_type": "config_update",
                "target": "import-service",
                "parameters": {"key": "batch_size", "value": batch},
                "order": 1,
            },
            {"action_type": "cache_clear", "target": "import-service", "parameters": {}},
        ]

    for batch in (100, 50, 50):
        await _recorded_run(pool, kg, problem.id, sequence(batch))
    # not counted: a run nobody approved, one that did not heal, and a single step
    await _recorded_run(pool, kg, problem.id, sequence(20), approver=None)
    await _recorded_run(pool, kg, problem.id, sequence(20), outcome="compensated")
    await _recorded_run(pool, kg, problem.id, sequence(20)[:1])
    builder = tool_builder(pool, min_runs=3)
    report = await builder.mine("aiops")
    [record] = report.built
    assert record.status == "proposed", record.validation.refusal()
    assert record.origin == "mined" and record.problem_id == problem.id
    tool = record.spec
    assert tool.name == "config_update_then_cache_clear"
    [parameter] = tool.parameters
    assert (parameter.name, parameter.type, parameter.default) == ("value", "integer", 50)
    assert [(s.action_type, s.compensation) for s in tool.steps] == [
        ("config_update", "undo"),
        ("cache_clear", "none"),
    ]
    assert tool.steps[0].parameters == {"key": "batch_size", "value": "${value}"}
    assert [str(c) for c in tool.preconditions] == ["config_key batch_size"]
    assert "3 healed run(s) (3 approved)" in (
        await pool.fetchval("SELECT details->>'why' FROM audit_log WHERE action = 'tool-draft'")
    )
    # the same sequence is drafted once, however often build runs
    assert (await builder.mine("aiops")).built == []
    assert parse_spec(record.spec_yaml) == tool
    # a fix of this problem asks for an action nothing offers: with no chat model, the
    # healed runs of the problem are its draft
    await ToolStore(pool).record_request(
        ToolRequest(action_type="ease_imports", problem_id=problem.id, service="import-service")
    )
    [requested] = (await builder.from_requests("aiops")).built
    assert requested.name == "ease_imports" and requested.status == "proposed"
    assert [s.action_type for s in requested.spec.steps] == ["config_update", "cache_clear"]


def test_cli_lists_shows_approves_and_retires_audited(cli_db: str, tmp_path: Path) -> None:
    spec_file = tmp_path / "tool.yaml"
    spec_file.write_text(
        """
name: tidy_logs
description: collect a log report, then clear the cache
steps:
  - action_type: log_analysis
    compensation: none
  - action_type: cache_clear
    compensation: none
postconditions:
  - kind: healthy
"""
    )
    runner = CliRunner()
    done = runner.invoke(cli.app, ["tools", "build"])  # both triggers, nothing recorded yet
    assert done.exit_code == 0, done.output
    assert "nothing new to build" in done.output
    assert "no requests" in runner.invoke(cli.app, ["tools", "requests"]).output
    done = runner.invoke(cli.app, ["tools", "draft", str(spec_file)])
    assert done.exit_code == 0, done.output
    assert "tidy_logs v1: proposed" in done.output
    rows = json.loads(runner.invoke(cli.app, ["tools", "list", "--json"]).stdout)
    assert [(r["name"], r["status"], r["steps"]) for r in rows] == [
        ("tidy_logs", "proposed", ["log_analysis", "cache_clear"])
    ]
    shown = runner.invoke(cli.app, ["tools", "show", "tidy_logs"])
    assert "# policy: ok" in shown.output and "action_type: log_analysis" in shown.output
    assert "# staging_trial: skipped" in shown.output
    shown_json = json.loads(runner.invoke(cli.app, ["tools", "show", "tidy_logs", "--json"]).stdout)
    assert [c["stage"] for c in shown_json["validation"]["checks"]] == [
        "schema",
        "policy",
        "dry_run",
        "staging_trial",
    ]
    approve = ["tools", "approve", "tidy_logs", "--version", "1", "--reason", "reviewed"]
    done = runner.invoke(cli.app, approve)
    assert done.exit_code == 0, done.output
    assert runner.invoke(cli.app, ["tools", "retire", "tidy_logs"]).exit_code != 0  # no reason
    done = runner.invoke(cli.app, ["tools", "retire", "tidy_logs", "--reason", "replaced"])
    assert done.exit_code == 0, done.output
    assert runner.invoke(cli.app, ["tools", "approve", "tidy_logs", "--version", "1"]).exit_code

    async def audited() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(cli_db)
        try:
            found = await conn.fetch(
                "SELECT action, decision FROM audit_log WHERE target = 'tidy_logs' ORDER BY seq"
            )
        finally:
            await conn.close()
        return [(r["action"], r["decision"]) for r in found]

    assert asyncio.run(audited()) == [
        ("tool-draft", "proposed"),
        ("tool", "approved"),
        ("tool", "retired"),
    ]


def test_cli_decisions_need_an_admin_token_in_signed_mode(
    cli_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aiops.config import get_settings

    secret = "tools-cli-test-" + "x" * 32
    monkeypatch.setenv("AIOPS_APPROVALS", "signed")
    monkeypatch.setenv("AIOPS_JWT_SECRET", secret)
    get_settings.cache_clear()
    spec_file = tmp_path / "tool.yaml"
    spec_file.write_text(
        "name: clear_cache\ndescription: clear it\n"
        "steps: [{action_type: cache_clear, compensation: none}]\n"
    )
    runner = CliRunner()
    done = runner.invoke(cli.app, ["tools", "draft", str(spec_file)])
    assert "need a token with the admin role" in str(done.exception)
    operator = issue_token(secret, "bob", [Role.OPERATOR], timedelta(hours=1))
    admin = issue_token(secret, "carol", [Role.ADMIN], timedelta(hours=1))

    def as_(token: str, *args: str) -> Any:
        monkeypatch.setenv("AIOPS_TOKEN", token)
        get_settings.cache_clear()
        return runner.invoke(cli.app, ["tools", *args])

    done = as_(operator, "draft", str(spec_file))
    assert "bob's, who has no admin role" in str(done.exception)
    done = as_(admin, "draft", str(spec_file))
    assert done.exit_code == 0, done.output
    # every decision, not only the draft: an operator's token makes none of them
    for command in (
        ["approve", "clear_cache", "--version", "1"],
        ["trial", "clear_cache", "--version", "1"],
        ["retire", "clear_cache", "--reason", "no"],
        ["build"],
    ):
        done = as_(operator, *command)
        assert done.exit_code != 0, command
        assert "bob's, who has no admin role: tool changes need one" in str(done.exception)
    assert [r["status"] for r in json.loads(as_(operator, "list", "--json").stdout)] == ["proposed"]
    done = as_(admin, "approve", "clear_cache", "--version", "1")
    assert done.exit_code == 0, done.output
    assert "(by carol)" in done.output
    done = as_(operator, "retire", "clear_cache", "--reason", "no")
    assert "no admin role" in str(done.exception)
    assert json.loads(as_(operator, "show", "clear_cache", "--json").stdout)["status"] == (
        "approved"
    )
    get_settings.cache_clear()
