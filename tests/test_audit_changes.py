"""Limit, policy, knowledge-graph and pattern changes land in the audit log, keyed, with
who made them; the chain still verifies after them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from aiops.audit import AuditLog, audit_keys
from aiops.audit.records import POLICY_ACTION, record_policy
from aiops.config import get_settings, load_settings
from workers import cli

cli._register()

PROBLEM = {
    "kind": "problem",
    "key": "audit-disk-full",
    "description": "The disk is full and writes fail",
    "category": "disk",
    "solutions": [
        {
            "description": "Clear the cache",
            "actions": [{"action_type": "cache_clear", "target": "api"}],
        }
    ],
}


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AIOPS_HOME", str(tmp_path))
    for name in ("AIOPS_EMBEDDING_PROVIDER", "AIOPS_EMBEDDING_MODEL", "AIOPS_EMBEDDING_DIM"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


async def _aiops(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli.app, list(args))


async def _rows(pool: asyncpg.Pool) -> list[tuple[str, str | None, str]]:
    log = AuditLog(pool, audit_keys(load_settings()))
    assert (await log.verify()).ok
    return [(r.action, r.target, r.decision) for r in await log.list(limit=100)]


async def test_limits_and_patterns_are_audited(env: str, pool: asyncpg.Pool) -> None:
    assert (await _aiops("limits", "set", "max_agents", "4")).exit_code == 0
    assert (await _aiops("limits", "reset")).exit_code == 0
    loaded = await _aiops("patterns", "load", "--defaults")
    assert loaded.exit_code == 0, loaded.output
    again = await _aiops("patterns", "load", "--defaults")  # nothing new: no row
    assert again.exit_code == 0
    listed = await _aiops("patterns", "list", "--json")
    first = json.loads(listed.stdout.splitlines()[0])["id"]
    assert (await _aiops("patterns", "retire", first, "--reason", "noisy")).exit_code == 0
    rows = await _rows(pool)
    assert [(a, t, d) for a, t, d in rows if a != "patterns load"] == [
        ("limits", "max_agents", "set"),
        ("limits", "*", "reset"),
        ("patterns retire", first, "retired"),
    ]
    assert [a for a, _, _ in rows].count("patterns load") == 1
    actors = {r.actor for r in await AuditLog(pool).list(limit=10)}
    assert all(a.startswith("os:") for a in actors)


async def test_kg_import_is_audited(env: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps(PROBLEM) + "\n")
    done = await _aiops("kg", "import", str(source))
    assert done.exit_code == 0, done.output
    rows = await _rows(pool)
    assert rows == [("kg import", str(source), "imported")]
    details = (await AuditLog(pool).list(limit=1))[0].details
    assert details["created"] == 1 and details["solutions"] == 1
    # the same file again changes nothing, so nothing is recorded
    assert (await _aiops("kg", "import", str(source))).exit_code == 0
    assert len(await _rows(pool)) == 1


async def test_policy_in_force_recorded_when_it_changes(
    env: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    log = AuditLog(pool, audit_keys(load_settings()))
    assert await record_policy(log, None, "aiops-worker") is not None
    assert await record_policy(log, None, "aiops-worker") is None  # a restart, same policy
    policy = tmp_path / "policy.yaml"
    policy.write_text("allowed: [restart]\n")
    changed = await record_policy(log, policy, "aiops-worker")
    assert changed is not None and changed.target == str(policy)
    assert changed.details["previous_digest"] is not None
    assert await record_policy(log, policy, "aiops-worker") is None
    rows = [r for r in await log.list() if r.action == POLICY_ACTION]
    assert len(rows) == 2 and (await log.verify()).ok
