"""Learning on patterns against real PostgreSQL and Redis: atomic outcome counts, the seed's
evolution example ("restart on memory > 80%" at 60% becomes "scale at 70%, restart at
85%"), a moved threshold, an action swapped for a better solution, and one evolution when
evolvers race."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import pytest_asyncio
import redis.asyncio as aioredis

from aiops.db.pool import create_pool
from aiops.events.envelope import Event
from aiops.events.mesh import EventMesh
from aiops.patterns.learning import PatternEvolver, PatternTracker
from aiops.patterns.matcher import PatternMatcher
from aiops.patterns.models import MatchingRule, Operator, Pattern, PatternStatus
from aiops.patterns.proposals import Outcome, propose_evolution
from aiops.patterns.segmentation import Point, segment
from aiops.patterns.store import PatternLibrary
from aiops.policy.models import ActionSpec

RESTART = [ActionSpec(action_type="restart", target="{service}")]
SCALE = [ActionSpec(action_type="scale", target="{service}", parameters={"replicas": 3})]
CACHE_CLEAR = [ActionSpec(action_type="cache_clear", target="{service}")]


def memory_restart() -> Pattern:
    return Pattern(
        description="Restart on memory > 80%",
        pattern_type="performance",
        severity="high",
        matching_rules=[
            MatchingRule(field="memory_usage", operator=Operator.GREATER_THAN, value=80)
        ],
        actions=RESTART,
    )


def metric(memory: float, service: str = "api") -> Event:
    return Event(event_type="MetricReport", source=service, payload={"memory_usage": memory})


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=12)
    yield pool
    await pool.close()


async def test_concurrent_outcomes_all_count(pool: asyncpg.Pool) -> None:
    added = await PatternLibrary(pool).add(memory_restart())
    tracker = PatternTracker(pool)
    both = await asyncio.gather(
        tracker.record_outcome(added.id, True), tracker.record_outcome(added.id, False)
    )
    assert sorted(s.attempt_count for s in both) == [1, 2]
    many = [tracker.record_outcome(added.id, i % 4 != 0) for i in range(40)]
    await asyncio.gather(*many)
    stats = await tracker.stats(added.id)
    assert (stats.attempt_count, stats.success_count) == (42, 31)
    assert abs(stats.success_rate - 31 / 42) < 1e-9
    assert len(await tracker.outcomes(added.id)) == 42


async def test_a_retried_recording_counts_once_and_keeps_what_the_rules_read(
    pool: asyncpg.Pool,
) -> None:
    added = await PatternLibrary(pool).add(memory_restart())
    tracker = PatternTracker(pool)
    event = Event(
        event_type="MetricReport",
        source="api",
        payload={"memory_usage": 87.5, "unrelated": "x" * 100},
    )
    first = await tracker.record_outcome(added.id, False, event=event, key="incident-abc")
    again = await tracker.record_outcome(added.id, False, event=event, key="incident-abc")
    assert first.recorded and not again.recorded
    assert again.attempt_count == first.attempt_count == 1
    [outcome] = await tracker.outcomes(added.id)
    assert outcome.observed == {"payload.memory_usage": 87.5}  # only what the rules read
    assert outcome.actions == RESTART  # the pattern's own actions by default


async def _record(
    tracker: PatternTracker,
    pattern_id: str,
    values: list[float],
    actions: list[ActionSpec],
    success: bool,
) -> None:
    for value in values:
        await tracker.record_outcome(pattern_id, success, event=metric(value), actions=actions)


async def test_the_seeds_evolution_example(pool: asyncpg.Pool, redis_url: str) -> None:
    """Restarts at 70-85% fail and scaling there works; restarts above 85% work. The
    pattern runs at 60% and evolves into scale at 70% and restart above 85%."""
    library = PatternLibrary(pool)
    tracker = PatternTracker(pool)
    old = await library.add(memory_restart())
    await _record(tracker, old.id, [72, 78, 81, 82, 83, 84, 85, 85], RESTART, False)
    await _record(tracker, old.id, [86, 88, 90, 91, 93, 95, 96, 97, 99], RESTART, True)
    await _record(tracker, old.id, [70, 73, 76, 80, 82, 84], SCALE, True)
    await _record(tracker, old.id, [75, 83], SCALE, False)  # scaling is not perfect
    stats = await tracker.stats(old.id)
    assert (stats.success_count, stats.attempt_count) == (15, 25)  # 60%: under 0.7

    stream = f"events:test-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(redis_url)
    mesh = EventMesh(client)
    evolver = PatternEvolver(pool, mesh=mesh, min_outcomes=10)
    try:
        assert await evolver.due() == [old.id]
        original_publish = mesh.publish

        async def publish(event: Event, **_: Any) -> str:
            return await original_publish(event, stream=stream)

        mesh.publish = publish  # type: ignore[method-assign]
        result = await evolver.evolve(old.id)
        assert result is not None
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(stream))
    finally:
        await client.aclose()

    proposal = result.proposal
    assert proposal.kind == "split" and proposal.field == "payload.memory_usage"
    scale, restart = proposal.patterns
    assert scale.actions == SCALE and restart.actions == RESTART
    assert [(r.operator.value, r.value) for r in scale.matching_rules] == [
        ("gte", 70),
        ("lte", 85),
    ]
    assert [(r.operator.value, r.value) for r in restart.matching_rules] == [("greater_than", 85)]
    assert scale.evolved_from == restart.evolved_from == old.id
    # posterior means weighted by outcomes: scale Beta(7, 3) on 8, restart Beta(10, 1) on 9
    assert proposal.expected_success_rate == round((8 * 7 / 10 + 9 * 10 / 11) / 17, 4)
    assert proposal.reason.endswith(
        "scale at 70..85 (6 ok, 2 failed); restart at 86..99 (9 ok, 0 failed)"
    )

    # stored, linked, the old one retired: the library now routes by memory level
    assert (await library.get(old.id)).pattern.status is PatternStatus.RETIRED
    edges = await pool.fetch(
        "SELECT to_node::text AS id FROM knowledge_edges"
        " WHERE from_node = $1::uuid AND relationship = 'evolves_into'",
        old.id,
    )
    assert sorted(e["id"] for e in edges) == sorted(result.new_ids)
    _, matcher = await library.load_matcher()
    by_id = {i: p for i, p in zip(result.new_ids, proposal.patterns, strict=True)}

    def actions_at(memory: float) -> list[str]:
        return [by_id[m.id].actions[0].action_type for m in matcher.match(metric(memory))]

    assert actions_at(70) == ["scale"] and actions_at(85) == ["scale"]
    assert actions_at(85.1) == ["restart"] and actions_at(99) == ["restart"]
    assert actions_at(65) == []

    # and everyone is told
    [(_, fields)] = entries
    event = Event.model_validate_json(fields[b"event"])
    assert event.event_type == "PatternEvolved" and str(event.id) == result.event_id
    assert event.payload["pattern_id"] == old.id
    assert event.payload["evolved_into"] == result.new_ids
    # evolving again does nothing: the old pattern is retired, the new ones have no outcomes
    assert await evolver.evolve(old.id) is None
    assert await evolver.due() == []


async def test_a_threshold_moves_where_outcomes_separate(pool: asyncpg.Pool) -> None:
    library = PatternLibrary(pool)
    tracker = PatternTracker(pool)
    old = await library.add(memory_restart())
    await _record(tracker, old.id, [80.5, 81, 83, 84, 86, 87, 88], RESTART, False)
    await _record(tracker, old.id, [90, 92, 95, 98], RESTART, True)
    await _record(tracker, old.id, [89], RESTART, False)
    result = await PatternEvolver(pool, min_outcomes=10).evolve(old.id)
    assert result is not None
    assert result.proposal.kind == "threshold"
    [moved] = result.proposal.patterns
    assert [(r.operator.value, r.value) for r in moved.matching_rules] == [("greater_than", 89)]
    assert moved.actions == RESTART


async def test_the_action_is_swapped_for_the_best_solution_of_the_problem(
    pool: asyncpg.Pool,
) -> None:
    """No numeric rule to split on: the solution with the best posterior for the problems
    the pattern triggers replaces the pattern's action."""
    library = PatternLibrary(pool)
    tracker = PatternTracker(pool)
    pattern = Pattern(
        description="cache stampede",
        event_types=["ServiceError"],
        matching_rules=[MatchingRule(field="message", operator=Operator.REGEX, value="stampede")],
        actions=RESTART,
    )
    old = await library.add(pattern)
    for i in range(10):
        await tracker.record_outcome(old.id, i < 3)  # restart: 3 of 10

    async def node(kind: str, data: dict[str, Any]) -> uuid.UUID:
        node_id: uuid.UUID = await pool.fetchval(
            "INSERT INTO knowledge_nodes (node_type, fingerprint, data)"
            " VALUES ($1, $2, $3::text::jsonb) RETURNING id",
            kind,
            uuid.uuid4().hex,
            json.dumps(data),
        )
        return node_id

    problem = await node("problem", {"description": "cache stampede on api"})
    clear = await node(
        "solution",
        {
            "description": "clear the cache",
            "actions": [a.model_dump(mode="json") for a in CACHE_CLEAR],
            "attempt_count": 12,
            "success_count": 11,
        },
    )
    scale = await node(
        "solution",
        {
            "description": "scale",
            "actions": [a.model_dump(mode="json") for a in SCALE],
            "attempt_count": 1,
            "success_count": 1,
        },
    )
    await pool.executemany(
        "INSERT INTO knowledge_edges (from_node, to_node, relationship) VALUES ($1, $2, $3)",
        [
            (uuid.UUID(old.id), problem, "triggers"),
            (clear, problem, "solves"),
            (scale, problem, "solves"),
        ],
    )
    result = await PatternEvolver(pool, min_outcomes=10).evolve(old.id)
    assert result is not None and result.proposal.kind == "action"
    [new] = result.proposal.patterns
    assert new.actions == CACHE_CLEAR and new.matching_rules == pattern.matching_rules
    assert "posterior, 0.86" in result.proposal.reason  # Beta(12, 2): 12/14


async def test_not_due_and_nothing_better_means_no_evolution(pool: asyncpg.Pool) -> None:
    library = PatternLibrary(pool)
    tracker = PatternTracker(pool)
    evolver = PatternEvolver(pool, min_outcomes=10)
    few = await library.add(memory_restart())
    await _record(tracker, few.id, [81, 82, 83], RESTART, False)
    assert await evolver.evolve(few.id) is None  # 3 outcomes < 10
    good = await library.add(memory_restart().model_copy(update={"severity": "critical"}))
    await _record(tracker, good.id, [85 + i for i in range(8)], RESTART, True)
    await _record(tracker, good.id, [81, 90], RESTART, False)
    assert await evolver.evolve(good.id) is None  # 80% >= 70%
    # failing everywhere with no alternative: nothing better is known, nothing changes
    hopeless = await library.add(memory_restart().model_copy(update={"severity": "low"}))
    await _record(tracker, hopeless.id, [81 + i for i in range(12)], RESTART, False)
    assert await evolver.propose(hopeless.id) is None
    assert {p.id for p in await library.list()} == {few.id, good.id, hopeless.id}


async def test_racing_evolvers_evolve_once(pool: asyncpg.Pool) -> None:
    library = PatternLibrary(pool)
    tracker = PatternTracker(pool)
    old = await library.add(memory_restart())
    await _record(tracker, old.id, [81, 82, 83, 84, 85, 85.5], RESTART, False)
    await _record(tracker, old.id, [86, 90, 95, 99], RESTART, True)
    evolvers = [PatternEvolver(pool, min_outcomes=10) for _ in range(4)]
    results = await asyncio.gather(*(e.evolve(old.id) for e in evolvers))
    done = [r for r in results if r is not None]
    assert len(done) == 1
    active = await library.list()
    assert [p.id for p in active] == done[0].new_ids


def test_segmentation_ignores_a_single_odd_outcome() -> None:
    points = [Point(v, "restart", True) for v in (81, 83, 85, 87, 89, 91)]
    points.append(Point(86, "restart", False))
    [only] = segment(points).segments
    assert (only.label, only.low, only.high) == ("restart", 81, 91)
    assert (only.successes, only.failures) == (6, 1)


def test_proposals_are_pure_and_respect_the_original_bounds() -> None:
    """A lower-bounded pattern (disk_free < 10) mirrors: its open end stays open."""
    pattern = Pattern(
        description="disk almost full",
        matching_rules=[MatchingRule(field="disk_free_pct", operator=Operator.LESS_THAN, value=10)],
        actions=RESTART,
        attempt_count=12,
        success_count=6,
    )
    outcomes = [
        Outcome(success=v < 5, actions=RESTART, observed={"payload.disk_free_pct": v})
        for v in (1, 2, 3, 4, 4.5, 4.9, 6, 7, 8, 9, 9.5, 9.9)
    ]
    proposal = propose_evolution("p", pattern, outcomes, min_outcomes=10)
    assert proposal is not None and proposal.kind == "threshold"
    [moved] = proposal.patterns
    assert [(r.operator.value, r.value) for r in moved.matching_rules] == [("lte", 4.9)]
    matcher = PatternMatcher([("new", moved)])

    def at(value: float) -> bool:
        event = Event(event_type="M", source="s", payload={"disk_free_pct": value})
        return bool(matcher.match(event))

    assert at(0.1) and at(4.9) and not at(5.5)
