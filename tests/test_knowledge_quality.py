"""Search quality. Paraphrases: 50 queries over 25 problems, worded so that shared words do
not give the answer away. Real duplicates: 274 log lines from eight real systems (Loghub),
each to be matched to another line of the same labelled event among 828 known ones. On both,
with one configuration, the hybrid must beat each of its halves."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiops.db.pool import create_pool
from aiops.embeddings import CachedEmbedder, MiniLMEmbedder
from aiops.knowledge import KnowledgeGraph
from aiops.knowledge.evaluation import MODES, RetrievalScores, evaluate, load_cases
from aiops.knowledge.importer import import_lines

FIXTURES = Path(__file__).parent / "fixtures" / "knowledge"


async def _scores(database_url: str, name: str) -> dict[str, RetrievalScores]:
    pool = await create_pool(database_url)
    try:
        kg = KnowledgeGraph(pool, CachedEmbedder(MiniLMEmbedder()))
        lines = (FIXTURES / f"{name}_problems.jsonl").read_text().splitlines()
        report = await import_lines(kg, lines)
        assert report.created == len(lines) and not report.errors
        cases = load_cases(FIXTURES / f"{name}_queries.jsonl")
        return {mode: await evaluate(kg, cases, mode) for mode in MODES}
    finally:
        await pool.close()


def _beats_both_halves(scores: dict[str, RetrievalScores]) -> None:
    hybrid, semantic, lexical = scores["hybrid"], scores["semantic"], scores["lexical"]
    assert hybrid.mrr > semantic.mrr and hybrid.mrr > lexical.mrr
    assert hybrid.top1 >= semantic.top1 and hybrid.top1 >= lexical.top1


async def test_hybrid_beats_each_half_on_paraphrased_queries(database_url: str) -> None:
    scores = await _scores(database_url, "paraphrase")
    assert scores["hybrid"].queries >= 40
    assert scores["hybrid"].top1 >= 0.90
    _beats_both_halves(scores)
    # the set does what it says: shared words alone mostly miss
    assert scores["lexical"].top1 < 0.6


@pytest.mark.timeout(600)
async def test_hybrid_beats_each_half_on_real_duplicate_reports(database_url: str) -> None:
    scores = await _scores(database_url, "loghub")
    assert scores["hybrid"].queries >= 200
    _beats_both_halves(scores)
