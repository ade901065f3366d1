"""What a reviewer found in tool construction, each on real PostgreSQL (and a real local
OpenAI-compatible server for the model): a build approves no staging step for a person,
an admin's trial does and is audited step by step; specifications refuse YAML aliases and
oversized parameters; every argument combination is validated or the tool is refused; the
fix's parameters are masked before the model sees them; an approval names the version the
admin read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet
from known_problems import register_simulated
from test_tools import tool_builder
from test_tools_flow import WARM, _ChatServer, chat_server
from typer.testing import CliRunner

from aiops.auth.roles import Role
from aiops.auth.tokens import issue_token
from aiops.db.pool import create_pool
from aiops.diagnosis.chat import ChatModel
from aiops.registry import ServiceDefinition, ServiceRegistry
from aiops.registry.models import ConfigKey, ReplicaBounds
from aiops.tools import lifecycle
from aiops.tools.drafting import LlmDrafter
from aiops.tools.models import ToolDraft, ToolRequest, ToolSpec
from aiops.tools.spec import ToolSpecError, parse_spec
from aiops.tools.store import ToolError, ToolStore
from workers import cli


@pytest.fixture
def chat() -> Iterator[_ChatServer]:
    with chat_server() as server:
        yield server


GUARDED = """
name: smaller_batches
description: shrink import batches
parameters:
  - {name: batch, type: integer, default: 50}
steps:
  - action_type: config_update
    parameters: {key: batch_size, value: "${batch}", success_probability: 1.0}
"""


async def _critical_services(database_url: str) -> None:
    pool = await create_pool(database_url)
    try:
        await register_simulated(pool, "import-service", critical=True, config_keys=("batch_size",))
        await ServiceRegistry(pool, Fernet(Fernet.generate_key())).register(
            ServiceDefinition(
                name="import-staging",
                endpoint="http://127.0.0.1:9/import-staging",
                health_check=None,
                critical=True,
                config_keys={"batch_size": ConfigKey(type="integer")},
                replicas=ReplicaBounds(min=0, max=2),
                metadata={"adapter": "simulated", "staging": True},
            )
        )
    finally:
        await pool.close()


async def _rows(database_url: str, query: str) -> list[dict[str, Any]]:
    pool = await create_pool(database_url)  # its JSON codecs
    try:
        return [dict(r) for r in await pool.fetch(query)]
    finally:
        await pool.close()


def test_a_build_approves_no_staging_step_an_admins_trial_signs_them(
    cli_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aiops.config import get_settings

    secret = "tools-trial-test-" + "x" * 32
    monkeypatch.setenv("AIOPS_APPROVALS", "signed")
    monkeypatch.setenv("AIOPS_JWT_SECRET", secret)
    monkeypatch.setenv("AIOPS_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("AIOPS_SIMULATED_ADAPTER", "1")
    monkeypatch.setenv(
        "AIOPS_TOKEN", issue_token(secret, "carol", [Role.ADMIN], timedelta(hours=1))
    )
    get_settings.cache_clear()
    asyncio.run(_critical_services(cli_db))
    spec_file = tmp_path / "tool.yaml"
    spec_file.write_text(GUARDED)
    runner = CliRunner()

    def tools(*args: str) -> Any:
        return runner.invoke(cli.app, ["tools", *args])

    # the admin's draft validates it, but nobody has approved its critical step on staging
    done = tools("draft", str(spec_file), "--service", "import-service")
    assert done.exit_code == 0, done.output
    assert "smaller_batches v1: refused: staging_trial: needs a person" in done.output
    assert "`aiops tools trial smaller_batches --version 1`" in done.output
    assert asyncio.run(_rows(cli_db, "SELECT 1 FROM action_executions")) == []
    # drafted again meanwhile, the same specification keeps the version the admin is reading
    done = tools("draft", str(spec_file), "--service", "import-service")
    assert "smaller_batches v1: refused: staging_trial: needs a person" in done.output
    shown = tools("show", "smaller_batches").output
    # the policy check reads the production service's own context: it is critical
    assert "every step is allowed by the policy; step 1 will wait for approval" in shown
    assert tools("approve", "smaller_batches", "--version", "1").exit_code != 0
    done = tools("trial", "smaller_batches", "--version", "2")
    assert "tool smaller_batches is at version 1, not 2" in str(done.exception)
    # the admin who read it runs its trial: the step runs with their signed approval
    done = tools("trial", "smaller_batches", "--version", "1")
    assert done.exit_code == 0, done.output
    assert "smaller_batches v1: proposed (trial by carol)" in done.output
    [executed] = asyncio.run(_rows(cli_db, "SELECT service, status FROM action_executions"))
    assert (executed["service"], executed["status"]) == ("import-staging", "succeeded")
    # a grant signed for carol, verified and spent by the guard on this one step
    [grant] = asyncio.run(_rows(cli_db, "SELECT approver FROM approval_grants_used"))
    assert grant["approver"] == "carol"
    audited = asyncio.run(
        _rows(
            cli_db,
            "SELECT actor, action, target, decision, details FROM audit_log"
            " WHERE action LIKE 'tool-trial%' ORDER BY seq",
        )
    )
    assert [
        (a["actor"], a["action"], a["target"], a["decision"], a["details"].get("approved_by"))
        for a in audited
    ] == [
        ("carol", "tool-trial:config_update", "import-staging", "needs-a-person", None),
        ("carol", "tool-trial:config_update", "import-staging", "succeeded", "carol"),
        ("carol", "tool-trial", "smaller_batches", "proposed", None),
    ]
    assert all(a["details"]["version"] == 1 for a in audited)
    done = tools("approve", "smaller_batches", "--version", "1")
    assert done.exit_code == 0, done.output
    get_settings.cache_clear()


# about 500 characters: ten levels of ten-element lists through aliases (1e10 leaves)
_ALIAS_BOMB = """
name: alias_bomb
description: x
steps:
  - action_type: cache_clear
    compensation: none
    parameters:
      a: &a ["${p}", "${p}", "${p}", "${p}", "${p}", "${p}", "${p}", "${p}", "${p}", "${p}"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
parameters: [{name: p, type: string, default: x}]
"""


async def test_specifications_refuse_aliases_and_oversized_parameters(
    database_url: str, chat: _ChatServer
) -> None:
    with pytest.raises(ToolSpecError, match=r"anchors \(&name\) are not allowed in a tool"):
        parse_spec(_ALIAS_BOMB)
    with pytest.raises(ToolSpecError, match=r"aliases \(\*name\) are not allowed"):
        parse_spec(GUARDED.replace('value: "${batch}"', "value: *undeclared"))
    # the same shapes written out (JSON has no aliases) are bounded too
    deep: Any = "${batch}"
    for _ in range(6):
        deep = [deep]
    wide = {f"k{n}": n for n in range(300)}
    base = parse_spec(GUARDED).model_dump()
    for parameters, why in (({"v": deep}, "nest deeper than 4"), (wide, "more than 256")):
        broken = json.loads(json.dumps(base))
        broken["steps"][0]["parameters"] = parameters
        with pytest.raises(ValueError, match=why):
            ToolSpec.model_validate(broken)
    # a model's answer is untrusted: an alias bomb from it drafts nothing
    pool = await create_pool(database_url)
    try:
        await ToolStore(pool).record_request(ToolRequest(action_type="alias_bomb"))
        chat.answers[:] = [_ALIAS_BOMB]
        drafter = LlmDrafter(ChatModel("tiny-model", chat.url, None, 10.0))
        report = await tool_builder(pool, drafter=drafter).from_requests("aiops")
        assert report.built == []
        assert "anchors (&name) are not allowed in a tool" in report.notes[0]
        assert await pool.fetchval("SELECT count(*) FROM tools") == 0
    finally:
        await pool.close()


def _tuning(steps: list[dict[str, Any]], parameters: list[dict[str, Any]]) -> ToolDraft:
    return ToolDraft(
        spec=ToolSpec.model_validate(
            {
                "name": "tune_cache",
                "description": "tune the cache",
                "parameters": parameters,
                "steps": steps,
            }
        ),
        origin="llm",
    )


async def test_every_argument_combination_is_validated_or_the_tool_refused(
    pool: asyncpg.Pool,
) -> None:
    builder = tool_builder(pool)
    ttls = list(range(1, 65))
    step = {"action_type": "config_update", "parameters": {"key": "${key}", "value": "${ttl}"}}
    # the 65th combination changes a credential: found, not sampled away
    record = await builder.submit(
        _tuning(
            [step],
            [
                {"name": "key", "choices": ["cache_ttl", "db_password"], "default": "cache_ttl"},
                {"name": "ttl", "type": "integer", "choices": ttls, "default": 1},
            ],
        ),
        "aiops",
    )
    assert record.status == "refused"
    assert "step 1 (config_update): credential change" in (record.validation.refusal() or "")
    # one step over more combinations than can be checked: refused, not half checked
    three = [{"name": n, "type": "integer", "choices": list(range(8)), "default": 0} for n in "abc"]
    wide = {
        "action_type": "config_update",
        "parameters": {"key": "cache_ttl", "value": "${a}", "note": "${b}-${c}"},
    }
    record = await builder.submit(_tuning([wide], three), "aiops")
    assert record.status == "refused"
    assert "step 1 (config_update): 512 argument combinations, too many to validate" in (
        record.validation.refusal() or ""
    )
    # steps over parameters of their own: each is checked over its own 64, so 64**6 calls
    # of the tool are covered by 384 checks
    own = [{"name": f"ttl{n}", "type": "integer", "choices": ttls, "default": 1} for n in range(6)]
    steps = [
        {
            "action_type": "config_update",
            "parameters": {"key": "cache_ttl", "value": f"${{ttl{n}}}"},
            "compensation": "undo",
        }
        for n in range(6)
    ]
    record = await builder.submit(_tuning(steps, own), "aiops")
    assert record.status == "proposed", record.validation.refusal()


async def test_the_fix_parameters_are_masked_before_the_model_sees_them(
    chat: _ChatServer,
) -> None:
    chat.answers[:] = [WARM]
    drafter = LlmDrafter(ChatModel("tiny-model", chat.url, None, 10.0))
    request = ToolRequest(
        action_type="warm_import_cache",
        parameters={
            "key": "db_url",
            "value": "postgresql://importer:hunter2@db.internal:5432/imports",
            "nested": [{"key": "db_password", "value": "s3cr3t-Pa55"}],
        },
    )
    await drafter.draft(request, None)
    sent = json.dumps(chat.requests[0]["body"]["messages"])
    assert "db.internal" in sent and "db_url" in sent  # what the fix does is still said
    assert "hunter2" not in sent
    # a config key that names a secret has its value masked whole
    assert "s3cr3t-Pa55" not in sent


async def test_approval_names_the_version_the_admin_read(pool: asyncpg.Pool) -> None:
    builder = tool_builder(pool)
    store = ToolStore(pool)
    first = parse_spec(GUARDED.replace(", success_probability: 1.0", ""))
    assert (await builder.submit(ToolDraft(spec=first, origin="llm"), "aiops")).version == 1
    # the admin reads v1; meanwhile a redraft stores v2
    second = first.model_copy(update={"description": "shrink import batches further"})
    assert (await builder.submit(ToolDraft(spec=second, origin="llm"), "aiops")).version == 2
    with pytest.raises(ToolError, match="smaller_batches is at version 2, not 1"):
        await lifecycle.approve(store, "smaller_batches", "carol", version=1)
    with pytest.raises(ToolError, match="at version 2, not 1"):
        await lifecycle.retire(store, "smaller_batches", "carol", "old", version=1)
    current = await store.require("smaller_batches")
    assert (current.status, current.decided_by) == ("proposed", None)
    approved = await lifecycle.approve(store, "smaller_batches", "carol", version=2)
    assert (approved.version, approved.status, approved.decided_by) == (2, "approved", "carol")
    decided = await pool.fetch("SELECT decision, details FROM audit_log WHERE action = 'tool'")
    assert [(r["decision"], r["details"]["version"]) for r in decided] == [("approved", 2)]


def test_cli_approve_requires_the_version(cli_db: str, tmp_path: Path) -> None:
    spec_file = tmp_path / "tool.yaml"
    spec_file.write_text(GUARDED.replace(", success_probability: 1.0", ""))
    runner = CliRunner()
    assert runner.invoke(cli.app, ["tools", "draft", str(spec_file)]).exit_code == 0
    done = runner.invoke(cli.app, ["tools", "approve", "smaller_batches"])
    assert done.exit_code == 2 and "--version" in done.output
    done = runner.invoke(cli.app, ["tools", "approve", "smaller_batches", "--version", "3"])
    assert "at version 1, not 3" in str(done.exception)
    done = runner.invoke(cli.app, ["tools", "approve", "smaller_batches", "--version", "1"])
    assert done.exit_code == 0, done.output


async def test_a_requested_tool_waiting_for_a_trial_is_not_redrafted(
    database_url: str, chat: _ChatServer
) -> None:
    await _critical_services(database_url)
    pool = await create_pool(database_url)
    try:
        store = ToolStore(pool)
        await store.record_request(
            ToolRequest(action_type="smaller_batches", service="import-service")
        )
        chat.answers[:] = [GUARDED, GUARDED.replace("default: 50", "default: 40")]
        drafter = LlmDrafter(ChatModel("tiny-model", chat.url, None, 10.0))
        builder = tool_builder(pool, drafter=drafter)
        [record] = (await builder.from_requests("aiops")).built
        assert (record.version, record.status) == (1, "refused")
        assert record.validation.needs_a_person
        # the next build leaves it for the admin: no redraft moves the version they read
        assert (await builder.from_requests("aiops")).built == []
        assert len(chat.requests) == 1
        assert (await store.require("smaller_batches")).version == 1
    finally:
        await pool.close()
