"""The pattern library on real PostgreSQL: idempotent adds, retirement, the version that
tells listeners to reload, the detector picking up changes while it runs, and the CLI."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from typer.testing import CliRunner

from aiops.config import get_settings
from aiops.db.pool import create_pool
from aiops.events.envelope import Event
from aiops.patterns.detector import PatternDetector
from aiops.patterns.errors import PatternError, PatternNotFound
from aiops.patterns.files import DEFAULT_PATTERNS, read_patterns
from aiops.patterns.learning import PatternTracker
from aiops.patterns.models import MatchingRule, Operator, Pattern, PatternStatus
from aiops.patterns.store import PatternLibrary
from workers.commands import patterns as commands


def memory_pattern(threshold: float = 80, **extra: object) -> Pattern:
    return Pattern.model_validate(
        {
            "description": f"memory above {threshold}",
            "pattern_type": "performance",
            "severity": "high",
            "matching_rules": [
                {"field": "memory_usage", "operator": "greater_than", "value": threshold}
            ],
            "actions": [{"action_type": "restart", "target": "{service}"}],
            **extra,
        }
    )


def metric(**payload: object) -> Event:
    return Event(event_type="MetricReport", source="api", payload=dict(payload))


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=6)
    yield pool
    await pool.close()


async def test_add_is_idempotent_and_never_brings_back_a_retired_pattern(
    pool: asyncpg.Pool,
) -> None:
    library = PatternLibrary(pool)
    first = await library.add(memory_pattern())
    again = await library.add(memory_pattern(description="same rules, other words"))
    assert first.created and not again.created and again.id == first.id
    other = await library.add(memory_pattern(90))
    assert other.created and other.id != first.id
    assert [s.id for s in await library.list()] == [first.id, other.id]

    assert await library.retire(first.id, "replaced") is True
    assert await library.retire(first.id, "again") is False
    back = await library.add(memory_pattern())
    assert back.id == first.id and back.status is PatternStatus.RETIRED and not back.created
    assert [s.id for s in await library.list()] == [other.id]
    retired = await library.get(first.id)
    assert retired.pattern.status is PatternStatus.RETIRED
    assert retired.pattern.retired_reason == "replaced"
    assert len(await library.list(None)) == 2

    with pytest.raises(PatternNotFound, match="UUIDs"):
        await library.get("not-an-id")
    with pytest.raises(PatternNotFound):
        await library.retire("00000000-0000-0000-0000-000000000000", "x")


async def test_invalid_patterns_are_refused_and_bad_rows_left_out(pool: asyncpg.Pool) -> None:
    library = PatternLibrary(pool)
    bad = Pattern(
        description="string threshold",
        matching_rules=[MatchingRule(field="cpu", operator=Operator.GREATER_THAN, value="90")],
    )
    with pytest.raises(PatternError, match="takes a number"):
        await library.add(bad)
    with pytest.raises(PatternError):
        await library.add_many([memory_pattern(), bad])
    assert await library.list(None) == []  # all or nothing
    good = await library.add(memory_pattern())
    # rows written by other hands: one not even a Pattern, one that does not compile
    await pool.execute(
        "INSERT INTO knowledge_nodes (node_type, fingerprint, data) VALUES"
        " ('pattern', 'raw-1', '{\"status\": \"active\"}'::jsonb),"
        " ('pattern', 'raw-2', $1::text::jsonb)",
        bad.model_dump_json(),
    )
    _, matcher = await library.load_matcher()
    assert [p.id for p in matcher.patterns] == [good.id]
    assert len(matcher.errors) == 1 and "takes a number" in matcher.errors[0]


async def test_version_moves_on_what_patterns_match_not_on_counters(pool: asyncpg.Pool) -> None:
    library = PatternLibrary(pool)
    start = await library.version()
    added = await library.add(memory_pattern())
    v1 = await library.version()
    assert v1 > start
    await PatternTracker(pool).record_outcome(added.id, True, observed={"memory_usage": 91})
    await library.add_occurrences({added.id: 5})
    await pool.execute(
        "UPDATE knowledge_nodes SET data = data || '{\"confidence\": 0.9}' WHERE id = $1::uuid",
        added.id,
    )
    assert await library.version() == v1  # counts and confidence: no reload for that
    stored = await library.get(added.id)
    assert stored.pattern.occurrences == 5 and stored.pattern.attempt_count == 1
    # anyone changing the rules, even by hand in SQL, moves the version
    await pool.execute(
        "UPDATE knowledge_nodes SET data = jsonb_set(data, '{matching_rules,0,value}', '95')"
        " WHERE id = $1::uuid",
        added.id,
    )
    v2 = await library.version()
    assert v2 > v1
    await library.retire(added.id, "done")
    assert await library.version() > v2
    # an uncommitted change is not visible to a reader, nor is its version
    async with pool.acquire() as conn, conn.transaction():
        await library.add(memory_pattern(70), conn=conn)
        assert await library.version() == await library.version()
        snapshot = await library.snapshot()
        assert snapshot.patterns == []


async def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_detector_picks_up_changes_while_running(pool: asyncpg.Pool) -> None:
    library = PatternLibrary(pool)
    detector = await PatternDetector.start(pool, reload_s=0.1)
    try:
        high = metric(memory_usage=93.5)
        assert detector.classify(high) is None  # no patterns: the default rules
        added = await library.add(memory_pattern())
        await _wait(lambda: detector.classify(high) is not None)
        detection = detector.classify(high)
        assert detection is not None and detection.severity.value == "high"
        assert detection.text == "memory above 80"
        assert detector.classify(metric(memory_usage=50)) is None
        await library.retire(added.id, "test")
        await _wait(lambda: detector.classify(high) is None)
    finally:
        await detector.aclose()
    # the matches were counted into the pattern's occurrences
    stored = await library.get(added.id)
    assert stored.pattern.occurrences >= 3


async def test_detector_without_the_pattern_tables_uses_the_default_rules(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute("DROP TABLE pattern_library_version CASCADE")
    detector = await PatternDetector.start(pool, reload_s=0.1)
    try:
        assert detector.library is None
        error = Event(event_type="ServiceError", source="api", payload={"message": "boom"})
        found = detector.classify(error)
        assert found is not None and found.text == "boom"
    finally:
        await detector.aclose()


def test_shipped_defaults_parse_and_compile() -> None:
    patterns = read_patterns(DEFAULT_PATTERNS)
    descriptions = {p.description for p in patterns}
    assert {"Memory usage above 80%", "Error rate above 5%", "Latency above one second"} <= (
        descriptions
    )


@pytest.fixture
def cli_env(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(commands.app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return getattr(result.exception, "exit_code", 1), str(result.exception)
    return result.exit_code, result.output


def test_cli_load_list_retire(cli_env: None, tmp_path: Path) -> None:
    code, out = run("load", "--defaults")
    assert code == 0, out
    shipped = len(read_patterns(DEFAULT_PATTERNS))
    assert f"{shipped} added, 0 already" in out
    code, out = run("load", "--defaults")
    assert code == 0 and f"0 added, {shipped} already" in out

    code, out = run("list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == shipped
    memory = next(r for r in rows if r["description"] == "Memory usage above 80%")
    assert memory["matching_rules"] == [
        {"field": "memory_usage", "operator": "greater_than", "value": 80}
    ]
    code, out = run("retire", memory["id"], "--reason", "by test")
    assert code == 0 and "retired" in out
    code, out = run("list")
    assert memory["id"] not in out and "Error rate above 5%" in out
    code, out = run("list", "--all")
    assert memory["id"] in out and "retired" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "patterns:\n  - description: broken\n"
        "    matching_rules: [{field: cpu, operator: regex, value: '('}]\n"
    )
    code, out = run("load", str(bad))
    assert code == 2 and "pattern 1 ('broken')" in out and "invalid regex" in out
    code, out = run("load", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such file" in out
    code, out = run("load")
    assert code == 2 and "FILE or --defaults" in out


def test_cli_evolve(cli_env: None, database_url: str, redis_url: str) -> None:
    async def prepare() -> str:
        pool = await create_pool(database_url, max_size=2)
        try:
            added = await PatternLibrary(pool).add(memory_pattern())
            tracker = PatternTracker(pool)
            for value in (81, 82, 83, 84, 85, 86):
                await tracker.record_outcome(added.id, False, observed={"memory_usage": value})
            for value in (90, 92, 94, 96):
                await tracker.record_outcome(added.id, True, observed={"memory_usage": value})
            return added.id
        finally:
            await pool.close()

    pattern_id = asyncio.run(prepare())
    code, out = run("evolve", "--dry-run")
    [proposal] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert code == 0 and proposal["pattern_id"] == pattern_id and proposal["kind"] == "threshold"
    assert proposal["patterns"][0]["matching_rules"][0]["value"] == 86
    code, out = run("list")
    assert pattern_id in out  # a dry run changes nothing

    async def published() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return int(await client.xlen("events:aiops-patterns"))
        finally:
            await client.aclose()

    before = asyncio.run(published())
    code, out = run("evolve", pattern_id)
    [result] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert code == 0 and result["old_id"] == pattern_id and len(result["new_ids"]) == 1
    assert asyncio.run(published()) == before + 1
    code, out = run("list")
    assert pattern_id not in out and result["new_ids"][0] in out and "> 86" in out
    code, out = run("evolve")
    assert code == 0 and "nothing to evolve" in out
