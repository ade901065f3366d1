"""The knowledge graph store on real PostgreSQL+pgvector with the real local embedding model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio

from aiops.db.pool import create_pool
from aiops.embeddings import CachedEmbedder, MiniLMEmbedder
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.policy.models import ActionSpec

_EMBEDDER = CachedEmbedder(MiniLMEmbedder())


@pytest_asyncio.fixture
async def kg(database_url: str) -> AsyncIterator[KnowledgeGraph]:
    pool = await create_pool(database_url, max_size=10)
    yield KnowledgeGraph(pool, _EMBEDDER, similarity_threshold=0.8)
    await pool.close()


def _problem(description: str, service: str = "import-service", **extra: object) -> ProblemIn:
    return ProblemIn.model_validate(
        {"description": description, "category": "error", "context": {"service": service}, **extra}
    )


async def test_twenty_concurrent_adds_are_one_node_counted_twenty(kg: KnowledgeGraph) -> None:
    problem = _problem("Import timeout with large files")
    records = await asyncio.gather(*(kg.add_problem(problem) for _ in range(20)))
    assert len({r.id for r in records}) == 1
    assert sum(r.created for r in records) == 1
    assert max(r.occurrence_count for r in records) == 20
    assert await kg.get_problem_count() == 1


async def test_same_text_other_variables_dedups_and_near_duplicates_link(
    kg: KnowledgeGraph,
) -> None:
    a = await kg.add_problem(_problem("connection refused to 10.0.0.12:5432 after 30s"))
    b = await kg.add_problem(_problem("connection refused to 10.0.0.99:5432 after 12s"))
    assert a.id == b.id and b.occurrence_count == 2  # same masked text, same fingerprint
    near = "connection refused to 10.0.0.12:5432 after 30s, retrying"
    c = await kg.add_problem(_problem(near))
    assert c.created and c.id != a.id and a.id in c.similar_to
    far = await kg.add_problem(_problem("TLS certificate expired for api.example.com"))
    assert far.similar_to == []
    other = await kg.add_problem(_problem(near + " now", service="billing"))
    assert other.similar_to == []  # another service is another problem


async def test_hybrid_search_ranks_paraphrase_and_solution_posterior(kg: KnowledgeGraph) -> None:
    memory = await kg.add_problem(
        _problem("Memory leak in long-running imports: RSS grows until OOMKilled")
    )
    timeout = await kg.add_problem(_problem("Import requests time out with large bookmark files"))
    await kg.add_problem(_problem("TLS certificate expired for api.example.com"))
    restart = await kg.add_solution(
        memory.id,
        SolutionIn(
            description="Restart the import worker",
            actions=[ActionSpec(action_type="restart", target="import-service")],
        ),
    )
    scale = await kg.add_solution(
        memory.id,
        SolutionIn(
            description="Scale out import workers",
            actions=[
                ActionSpec(action_type="scale", target="import-service", parameters={"replicas": 3})
            ],
        ),
    )
    await kg.add_solution(timeout.id, SolutionIn(description="Batch the import"))

    hits = await kg.find_solutions("the importer keeps eating RAM and gets killed", limit=3)
    assert hits[0].problem.id == memory.id
    assert {s.id for s in hits[0].solutions} == {restart, scale}
    exact = await kg.find_solutions("OOMKilled", limit=1)
    assert exact[0].problem.id == memory.id and exact[0].lexical == 1.0

    for _ in range(4):
        await kg.update_solution_outcome(scale, True, 60.0)
    await kg.update_solution_outcome(restart, False, 300.0)
    ranked = (await kg.find_solutions("importer memory grows until killed", limit=1))[0].solutions
    assert [s.id for s in ranked] == [scale, restart]
    assert ranked[0].successes == 4 and ranked[1].failures == 1


async def test_concurrent_outcomes_lose_nothing(kg: KnowledgeGraph) -> None:
    problem = await kg.add_problem(_problem("cache stampede after deploy"))
    solution = await kg.add_solution(problem.id, SolutionIn(description="Warm the cache"))
    await asyncio.gather(
        *(kg.update_solution_outcome(solution, i % 2 == 0, 10.0 * (i + 1)) for i in range(20))
    )
    stats = await kg.solution_stats(solution)
    assert stats.attempt_count == 20 and stats.success_count == 10
    assert stats.success_rate == pytest.approx(0.5)
    assert stats.avg_resolution_time_s is not None


class RecordingEmbedder:
    """The real model, remembering what text it was given."""

    def __init__(self) -> None:
        self.model, self.dim, self.seen = _EMBEDDER.model, _EMBEDDER.dim, list[str]()

    async def embed(self, texts: Sequence[str]) -> Any:
        self.seen.extend(texts)
        return await _EMBEDDER.embed(texts)


async def test_text_is_masked_before_embedding(database_url: str) -> None:
    recorder = RecordingEmbedder()
    pool = await create_pool(database_url)
    try:
        kg = KnowledgeGraph(pool, recorder)
        problem = await kg.add_problem(
            _problem("login failed for alice@example.com with password=hunter2")
        )
        await kg.add_solution(problem.id, SolutionIn(description="ask alice@example.com"))
        await kg.find_solutions("why does alice@example.com fail, token=abc123")
    finally:
        await pool.close()
    text = " ".join(recorder.seen)
    assert len(recorder.seen) == 3
    assert "alice@example.com" not in text and "hunter2" not in text and "abc123" not in text
    assert "<EMAIL>" in text


async def test_recorded_problems_without_solutions_do_not_crowd_out_known_ones(
    kg: KnowledgeGraph,
) -> None:
    known = await kg.add_problem(_problem("Import requests time out with large bookmark files"))
    await kg.add_solution(known.id, SolutionIn(description="Batch the import"))
    for i in range(6):  # what incidents record: the same text, other services, no solution yet
        await kg.add_problem(
            _problem("Import requests time out with large bookmark files", service=f"svc-{i}")
        )
    crowded = await kg.find_solutions("bookmark import timed out", limit=3)
    assert sum(not h.solutions for h in crowded) >= 2  # they would fill the top places
    solvable = await kg.find_solutions("bookmark import timed out", limit=3, require_solutions=True)
    assert [h.problem.id for h in solvable] == [known.id]
