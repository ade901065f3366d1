"""Traversal, statistics, embedding checks and pattern mining on real PostgreSQL+pgvector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from aiops.db.pool import create_pool
from aiops.embeddings import CachedEmbedder, MiniLMEmbedder
from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.knowledge.errors import KnowledgeError
from aiops.knowledge.mining import template_regex
from aiops.patterns.models import Pattern
from aiops.policy.models import ActionSpec

_EMBEDDER = CachedEmbedder(MiniLMEmbedder())


@pytest_asyncio.fixture
async def kg(database_url: str) -> AsyncIterator[KnowledgeGraph]:
    pool = await create_pool(database_url, max_size=5)
    yield KnowledgeGraph(pool, _EMBEDDER)
    await pool.close()


def _problem(description: str, service: str = "import-service", **extra: object) -> ProblemIn:
    return ProblemIn.model_validate(
        {"description": description, "category": "error", "context": {"service": service}, **extra}
    )


async def _node(kg: KnowledgeGraph, name: str) -> str:
    return (await kg.add_problem(_problem(f"node {name} failed", service=name))).id


# --- traversal ---------------------------------------------------------------------------


async def test_traverse_gives_hop_distance_and_a_shortest_path_through_a_cycle(
    kg: KnowledgeGraph,
) -> None:
    a, b, c, d, e = [await _node(kg, n) for n in "abcde"]
    # a -> b -> c -> a is a cycle; d hangs off c; e is two hops from a along a shortcut
    await kg.add_edge(a, b, "causes")
    await kg.add_edge(b, c, "causes")
    await kg.add_edge(c, a, "causes")
    await kg.add_edge(c, d, "leads_to")
    await kg.add_edge(a, e, "depends_on")

    found = await kg.traverse(a, max_hops=3, direction="out")
    by_id = {n.id: n for n in found}
    assert set(by_id) == {b, c, d, e}  # the start node is not its own neighbour
    assert by_id[b].hops == 1 and by_id[c].hops == 2 and by_id[d].hops == 3
    assert by_id[d].path == (a, b, c, d)
    assert by_id[d].steps == ("-causes->", "-causes->", "-leads_to->")
    assert [n.hops for n in found] == sorted(n.hops for n in found)  # nearest first

    # backwards: c reaches a in one hop against the a -> b -> c chain's direction
    backwards = {n.id: n for n in await kg.traverse(a, max_hops=1, direction="in")}
    assert set(backwards) == {c} and backwards[c].steps == ("<-causes-",)

    only_causes = {n.id for n in await kg.traverse(a, max_hops=3, relationships=["causes"])}
    assert only_causes == {b, c}
    assert {n.id for n in await kg.traverse(a, max_hops=1)} == {b, c, e}


async def test_traverse_follows_solves_edges_from_a_problem_and_refuses_bad_input(
    kg: KnowledgeGraph,
) -> None:
    problem = await _node(kg, "p")
    solution = await kg.add_solution(problem, SolutionIn(description="restart it"))
    [hit] = await kg.traverse(problem, max_hops=1, include_data=True)
    assert hit.id == solution and hit.node_type == "solution" and hit.steps == ("<-solves-",)
    assert hit.description == "restart it"
    with pytest.raises(KnowledgeError, match="unknown relationship"):
        await kg.traverse(problem, relationships=["fixes"])
    with pytest.raises(KnowledgeError, match="no knowledge node"):
        await kg.traverse("00000000-0000-0000-0000-000000000000")
    with pytest.raises(KnowledgeError, match="not a node id"):
        await kg.traverse("problem-1")
    with pytest.raises(KnowledgeError, match="max_hops"):
        await kg.traverse(problem, max_hops=0)


# --- stats and embedding checks ----------------------------------------------------------


async def test_stats_count_nodes_edges_and_embedding_coverage(kg: KnowledgeGraph) -> None:
    a = await _node(kg, "a")
    b = await _node(kg, "b")
    await kg.add_solution(a, SolutionIn(description="restart a"))
    await kg.add_edge(a, b, "causes")
    await kg.add_insight("run-1", a, None, "healed", "restarting a worked")
    stats = await kg.stats()
    assert stats.nodes == {"insight": 1, "problem": 2, "solution": 1}
    assert stats.edges == {"causes": 1, "leads_to": 1, "solves": 1}
    assert stats.total_nodes == 4 and stats.total_edges == 3
    assert stats.embeddings["problem"].coverage == 1.0
    assert stats.embeddings["pattern"].nodes == 0
    assert stats.embedding_dim == 384


async def test_verify_embeddings_finds_missing_and_foreign_vectors(
    kg: KnowledgeGraph, database_url: str
) -> None:
    ids = [await _node(kg, n) for n in "abc"]
    clean = await kg.verify_embeddings(sample=3)
    assert clean.ok and clean.sampled == 3 and clean.drifted == 0
    assert clean.min_cosine is not None and clean.min_cosine > 0.999

    pool = await create_pool(database_url, max_size=1)
    try:
        await pool.execute(
            "UPDATE knowledge_nodes SET embedding = NULL WHERE id = $1::uuid", ids[0]
        )
        # a vector of the right size from "another model": the sample must notice it
        other = np.random.default_rng(1).standard_normal(384).astype(np.float32)
        await pool.execute(
            "UPDATE knowledge_nodes SET embedding = $2 WHERE id = $1::uuid",
            ids[1],
            other / np.linalg.norm(other),
        )
    finally:
        await pool.close()
    report = await kg.verify_embeddings(sample=10)
    assert not report.ok and report.dim_matches
    assert report.missing == 1 and report.missing_ids == [ids[0]]
    assert report.drifted == 1 and report.drifted_ids == [ids[1]]
    assert "aiops kg reembed" in report.advice


# --- pattern mining -----------------------------------------------------------------------


async def test_extract_patterns_from_recurring_problems_is_idempotent(
    kg: KnowledgeGraph,
) -> None:
    template = "import of <NUM> bookmarks timed out after <NUM>"
    recurring = [
        await kg.add_problem(
            _problem(
                f"import of {n} bookmarks timed out after 30s",
                template=template,
                fingerprint=f"f{n}",
            )
        )
        for n in (100, 200)
    ]
    for _ in range(2):  # the first one occurs three times: 4 occurrences in the group
        await kg.add_problem(
            _problem(
                "import of 100 bookmarks timed out after 30s", template=template, fingerprint="f100"
            )
        )
    once = await kg.add_problem(
        _problem("TLS certificate expired", template="TLS certificate expired")
    )
    tried = await kg.add_solution(
        recurring[0].id,
        SolutionIn(
            description="Batch the import",
            actions=[
                ActionSpec(
                    action_type="config_update", target="import-service", parameters={"batch": 500}
                )
            ],
        ),
    )
    untried = await kg.add_solution(recurring[1].id, SolutionIn(description="Restart the importer"))
    await kg.update_solution_outcome(tried, True, 40.0)

    first = await kg.extract_patterns(min_occurrences=3)
    assert len(first.patterns) == 1 and first.created == 1
    mined = first.patterns[0]
    assert mined.occurrences == 4 and mined.problems == 2 and mined.template == template
    assert mined.solution_id == tried  # tried once and worked beats never tried

    second = await kg.extract_patterns(min_occurrences=3)
    assert second.created == 0 and [p.id for p in second.patterns] == [mined.id]
    stats = await kg.stats()
    assert stats.nodes["pattern"] == 1
    assert stats.edges["triggers"] == 2 and stats.edges["leads_to"] == 1

    linked = {n.id: n for n in await kg.traverse(mined.id, max_hops=1, direction="out")}
    assert set(linked) == {recurring[0].id, recurring[1].id, tried}
    assert once.id not in linked and untried not in linked
    assert linked[tried].steps == ("-leads_to->",)

    pool_data = await kg.traverse(
        recurring[0].id, max_hops=1, relationships=["triggers"], include_data=True
    )
    pattern = Pattern.model_validate(pool_data[0].data)
    assert pattern.occurrences == 4 and pattern.service == "import-service"
    assert pattern.actions[0].parameters == {"batch": 500}
    assert pattern.success_rate == 1.0 and 0.5 < pattern.confidence < 1.0
    rules = {rule.field: rule.value for rule in pattern.matching_rules}
    assert rules["service"] == "import-service"

    everything = await kg.extract_patterns(min_occurrences=1)
    assert len(everything.patterns) == 2  # the one-off problem too, the old pattern updated


def test_template_regex_matches_the_messages_of_its_template() -> None:
    import re

    rx = re.compile(template_regex("import of <NUM> bookmarks (<*>) timed out after <NUM>"))
    assert rx.search("import of 120 bookmarks (chrome.html) timed out after 30s")
    assert not rx.search("import of 120 bookmarks finished")
