"""Retrieval on long text: template reduction and windows, BM25F in PostgreSQL (ranking
order, title over body), chunked embeddings (best window), rank fusion."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest_asyncio

from aiops.db.pool import create_pool
from aiops.embeddings import CachedEmbedder, MiniLMEmbedder
from aiops.embeddings.base import Vectors, l2_normalise
from aiops.knowledge import KnowledgeGraph, ProblemIn
from aiops.knowledge.bm25 import Bm25Scorer
from aiops.knowledge.chunking import WINDOW_WORDS, chunk_texts, reduce_text, windows
from aiops.knowledge.fusion import Fusion, Signals, fuse
from aiops.knowledge.reembed import reembed
from aiops.knowledge.texts import node_text

_EMBEDDER = CachedEmbedder(MiniLMEmbedder())

TRACE = "\n".join(
    f"#{i} 0x00007f{i:04x}c0 in nsDocShell::LoadURI (this=0x7f12{i:02x}, aURI=0x0) at "
    f"/builds/worker/docshell/base/nsDocShell.cpp:{1200 + i}"
    for i in range(40)
)


@pytest_asyncio.fixture
async def kg(database_url: str) -> AsyncIterator[KnowledgeGraph]:
    pool = await create_pool(database_url, max_size=4)
    yield KnowledgeGraph(pool, _EMBEDDER)
    await pool.close()


def test_a_stack_trace_reduces_to_one_template_and_prose_stays() -> None:
    prose = "The browser hangs when I open the bookmarks sidebar with 3 windows open."
    reduced = reduce_text(prose + "\n" + TRACE)
    lines = reduced.splitlines()
    assert lines[0] == prose  # a sentence with a number is not a machine line
    assert lines[1:] == [
        "#<num> <hex> in nsDocShell::LoadURI (this=<hex>, aURI=<hex>) at <path>:<num>"
    ]


def test_windows_overlap_and_cover_the_text() -> None:
    words = [f"w{i}" for i in range(300)]
    parts = windows(" ".join(words), words=120, overlap=30)
    assert [p.split()[0] for p in parts] == ["w0", "w90", "w180"]
    assert parts[-1].split()[-1] == "w299"
    assert windows("short text") == ["short text"]
    # a short problem has no extra window; a long one has its title in each
    assert chunk_texts("Title", "few words") == []
    long_body = " ".join(f"word{i}" for i in range(WINDOW_WORDS * 2))
    extra = chunk_texts("Crash on startup", long_body)
    assert extra and all(c.startswith("Crash on startup\n") for c in extra)


async def _add(kg: KnowledgeGraph, key: str, title: str | None, body: str) -> str:
    record = await kg.upsert_problem(ProblemIn(key=key, title=title, description=body))
    return record.id


async def test_bm25_ranks_by_term_frequency_and_weighs_the_title(kg: KnowledgeGraph) -> None:
    filler = "the window opens and the page shows the usual content as expected"
    ids = {
        "once": await _add(kg, "once", None, f"scrollbar flicker seen. {filler}"),
        "thrice": await _add(
            kg, "thrice", None, f"scrollbar flicker, scrollbar flicker again, flicker. {filler}"
        ),
        "title": await _add(kg, "title", "Scrollbar flicker", filler),
        "none": await _add(kg, "none", None, f"printing fails on a network printer. {filler}"),
    }
    scorer = Bm25Scorer(title_weight=3.0)
    async with kg.pool.acquire() as conn:
        scores = {
            str(k): v for k, v in (await scorer.scores(conn, "scrollbar flicker", 10)).items()
        }
        flat = {
            str(k): v
            for k, v in (
                await Bm25Scorer(title_weight=1.0).scores(conn, "scrollbar flicker", 10)
            ).items()
        }
    by_key = {key: scores.get(node) for key, node in ids.items()}
    assert by_key["none"] is None  # no shared word: not a candidate
    assert by_key["thrice"] > by_key["once"]  # type: ignore[operator]
    # the same words in the title outweigh them in the body, and only by the title weight
    assert by_key["title"] > by_key["once"]  # type: ignore[operator]
    assert flat[ids["title"]] < scores[ids["title"]]
    assert all(0 < s <= 1 for s in scores.values())


async def test_a_duplicate_matching_in_a_late_window_is_found(kg: KnowledgeGraph) -> None:
    """The match sits past the model's input length: only the window vectors see it."""
    padding = " ".join(["the profile manager lists every profile with its folder and date"] * 30)
    late = "after that the mail client freezes while compacting folders and never recovers"
    long_id = await _add(kg, "long", "Profile manager notes", f"{padding}\n{late}")
    await _add(kg, "other", "Printing", "printing a page with images leaves blank sheets")
    rows = await kg.pool.fetch(
        "SELECT ord FROM knowledge_chunks c JOIN knowledge_nodes n ON n.id = c.node_id"
        " WHERE n.data->>'key' = 'long' ORDER BY ord"
    )
    assert len(rows) >= 2 and rows[0]["ord"] == 1
    hits = await kg.find_solutions(
        "mail freezes when compacting folders, it hangs forever", limit=2, mode="semantic"
    )
    assert hits[0].problem.id == long_id
    # the stored node text still verifies (same text on write and on re-embed)
    data = await kg.pool.fetchval("SELECT data FROM knowledge_nodes WHERE id = $1::uuid", long_id)
    assert node_text("problem", data) is not None and "Profile manager notes" in (
        node_text("problem", data) or ""
    )
    # rewriting the problem short drops its windows
    await _add(kg, "long", "Profile manager notes", "short now")
    count = await kg.pool.fetchval(
        "SELECT count(*) FROM knowledge_chunks WHERE node_id = $1::uuid", long_id
    )
    assert count == 0


def test_rank_fusion_orders_by_weighted_reciprocal_ranks() -> None:
    a = Signals(id="a", semantic=0.90, lexical=0.0, bm25=0.10)
    b = Signals(id="b", semantic=0.80, lexical=0.0, bm25=0.90)
    c = Signals(id="c", semantic=0.85, lexical=0.0, bm25=0.50)
    by_score = Fusion(semantic=0.9, lexical=0.0, bm25=0.1)
    assert [s.id for s, _ in fuse([a, b, c], by_score)] == ["a", "c", "b"]
    by_rank = Fusion(semantic=0.5, lexical=0.0, bm25=0.5, rank_k=1.0)
    ordered = fuse([a, b, c], by_rank)
    # a: ranks 1 and 3, b: 3 and 1 -> 0.5/2 + 0.5/4 each; c: 2 and 2 -> 0.5/3 + 0.5/3, less;
    # a and b tie on ranks and b's weighted score (0.85 against 0.50) breaks the tie
    assert [s.id for s, _ in ordered] == ["b", "a", "c"]
    # the reported relevance is the weighted score, 0..1, whatever the order
    assert all(0 <= rel <= 1 for _, rel in ordered)


def test_only_a_long_query_is_ordered_by_ranks_a_short_one_exactly_by_the_score() -> None:
    a = Signals(id="a", semantic=0.90, lexical=0.0, bm25=0.10)
    b = Signals(id="b", semantic=0.80, lexical=0.0, bm25=0.90)
    c = Signals(id="c", semantic=0.85, lexical=0.0, bm25=0.50)
    fusion = Fusion(
        semantic=0.9,
        lexical=0.0,
        bm25=0.1,
        rank_k=1.0,
        rank_semantic=0.4,
        rank_bm25=0.6,
        long_words=10,
    )
    # one word short of long: the score's order, no share of the ranks mixed in
    assert [s.id for s, _ in fuse([a, b, c], fusion, query_words=9)] == ["a", "c", "b"]
    assert [s.id for s, _ in fuse([a, b, c], fusion, query_words=10)] == ["b", "a", "c"]
    assert fusion.needs_bm25(9)  # the score weighs it
    no_bm25_score = fusion.model_copy(update={"bm25": 0.0})
    assert not no_bm25_score.needs_bm25(9) and not no_bm25_score.needs_windows(9)
    assert no_bm25_score.needs_bm25(10) and no_bm25_score.needs_windows(10)


async def test_search_runs_bm25_only_for_a_query_the_fusion_weighs_it_for(
    kg: KnowledgeGraph,
) -> None:
    target = await _add(kg, "t", "Scrollbar flicker", "the scrollbar flickers when scrolling")
    await _add(kg, "o", None, "printing fails on a network printer")
    fusion = Fusion(semantic=0.65, lexical=0.35, bm25=0.0, rank_k=20.0, long_words=8)
    short = await kg.find_solutions("scrollbar flicker", fusion=fusion)
    assert short[0].problem.id == target and all(h.bm25 == 0 for h in short)
    long = await kg.find_solutions(
        "the scrollbar flickers badly whenever I am scrolling a long page", fusion=fusion
    )
    assert long[0].problem.id == target and long[0].bm25 > 0
    # the signal alone is still measured whatever the fusion
    alone = await kg.find_solutions("scrollbar flicker", mode="bm25", fusion=fusion)
    assert alone[0].bm25 > 0


class _HashEmbedder:
    """A small deterministic embedder of another dimension: a model change for reembed."""

    model = "hash-8"
    dim = 8

    async def embed(self, texts: Sequence[str]) -> Vectors:
        rows = [
            np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) + 1.0
            for t in texts
        ]
        return l2_normalise(np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim))


async def test_reembed_recomputes_the_windows_in_the_new_dimension(
    kg: KnowledgeGraph, database_url: str
) -> None:
    body = "\n".join(f"step {i}: open the folder pane and compact the inbox" for i in range(60))
    node = await _add(kg, "long", "Compacting hangs", body)
    before = await kg.pool.fetchval(
        "SELECT count(*) FROM knowledge_chunks WHERE node_id = $1::uuid", node
    )
    assert before >= 2
    report = await reembed(database_url, _HashEmbedder())
    assert report.dim_changed and "knowledge_chunks_embedding_hnsw" in report.indexes_rebuilt
    rows = await kg.pool.fetch(
        "SELECT vector_dims(embedding) AS d FROM knowledge_chunks WHERE node_id = $1::uuid", node
    )
    assert len(rows) == before and {r["d"] for r in rows} == {8}
