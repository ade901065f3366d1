"""Retrieval quality: how often search puts the right known problem first (top-1), in the
first five (top-5), and how high on average (mean reciprocal rank), for the hybrid and for
each of its halves alone, on the same queries. Used by bench/knowledge.py and the tests."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from aiops.knowledge.store import KnowledgeGraph, SearchMode

MODES: tuple[SearchMode, ...] = ("hybrid", "semantic", "lexical", "bm25")


class RetrievalCase(BaseModel):
    query: str = Field(min_length=1)
    expected: list[str] = Field(min_length=1, description="keys of the right problems")
    source: str | None = Field(default=None, description="where the case comes from")


class RetrievalScores(BaseModel):
    mode: SearchMode
    queries: int
    top1: float
    top5: float
    mrr: float
    ranks: list[int | None] = Field(description="rank of the first right problem, per query")


def load_cases(path: Path) -> list[RetrievalCase]:
    return [
        RetrievalCase.model_validate(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


async def evaluate(
    kg: KnowledgeGraph, cases: list[RetrievalCase], mode: SearchMode, depth: int = 20
) -> RetrievalScores:
    """Search each case's query (`depth` hits) and score where its expected keys rank."""
    ranks: list[int | None] = []
    for case in cases:
        hits = await kg.find_solutions(case.query, limit=depth, mode=mode)
        keys = [hit.problem.key for hit in hits]
        rank = next((i for i, key in enumerate(keys, start=1) if key in case.expected), None)
        ranks.append(rank)
    n = len(cases) or 1
    return RetrievalScores(
        mode=mode,
        queries=len(cases),
        top1=round(sum(r == 1 for r in ranks) / n, 4),
        top5=round(sum(r is not None and r <= 5 for r in ranks) / n, 4),
        mrr=round(sum(1 / r for r in ranks if r) / n, 4),
        ranks=ranks,
    )
