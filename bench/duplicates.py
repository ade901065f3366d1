"""Duplicate bug reports on long real text: aiops search against BM25 and MiniLM alone.

    .venv/bin/python bench/duplicates.py [--data ../shared/data/gitbugs-seamonkey] [--folds 5]

Every report of the dev set (gitbugs, SeaMonkey: 1,076 reports, CC BY 4.0, cite "GitBugs",
av9ash) is written to the knowledge graph through the real store (title = Summary,
description = Description) on a real PostgreSQL + pgvector started here. Each report with a
known duplicate in the set is then the query (itself excluded) and the rank of its first
duplicate gives recall@1, recall@5 and MRR, for:

- aiops: find_solutions as shipped (its fusion is aiops/knowledge/fusion.py FUSION);
- its signals alone through the same store: semantic (MiniLM, best window), lexical
  (IDF share), bm25 (BM25F in PostgreSQL);
- BM25 as a library does it: bm25s over title + body, English stop words, Snowball stems;
- MiniLM alone: one all-MiniLM-L6-v2 vector per report, cosine.

Fusion weights: every configuration of a grid is scored on the signals the store returns,
on this set and on the two short-text sets of bench/knowledge.py (paraphrases, Loghub
duplicates: one configuration for all). The objective is robust across corpora: the worst,
over the sets, of a configuration's MRR relative to the best any configuration reaches on
that set (then the mean MRR), among the configurations that keep the short sets' top-1.
Each configuration is scored on the candidates the store fetches for it (a short query
gets no BM25 and no kNN over windows). The in-sample figure is the best configuration on
all queries (what FUSION should hold);
the held-out figure is k-fold cross-validation over the duplicate pairs (a pair's two
directions in the same fold): weights chosen on the other folds and the short sets,
scored on this fold. The held-out figure is the honest one; on
other projects' reports expect it, not the in-sample one.

Embeddings are cached on disk (--cache, default under /tmp) between runs: the model is the
slow part on a shared CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import itertools
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from aiops.db.migrate import migrate
from aiops.db.pool import create_pool
from aiops.devstack import DevStack
from aiops.devstack.ports import free_port
from aiops.embeddings import MiniLMEmbedder
from aiops.embeddings.base import Embedder, Vectors
from aiops.knowledge import KnowledgeGraph, ProblemIn, texts
from aiops.knowledge.evaluation import load_cases
from aiops.knowledge.fusion import FUSION, Fusion, Signals, fuse
from aiops.knowledge.importer import import_lines
from aiops.knowledge.store import problem_text
from aiops.knowledge.texts import problem_chunks
from aiops.privacy import mask

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository, or beside the folder of worktrees
DEFAULT_DATA = next(
    (
        base / "shared" / "data" / "gitbugs-seamonkey"
        for base in (ROOT.parent, ROOT.parent.parent)
        if (base / "shared" / "data" / "gitbugs-seamonkey").is_dir()
    ),
    ROOT.parent / "shared" / "data" / "gitbugs-seamonkey",
)
FIXTURES = ROOT / "tests" / "fixtures" / "knowledge"
FIXTURE_SETS = ("paraphrase", "loghub")
DEPTH = 50  # hits asked per query; a duplicate ranked below is a miss


class DiskCachedEmbedder:
    """An Embedder whose vectors persist in one .npz file between runs of the bench."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner, self.path = inner, path
        self.model, self.dim = inner.model, inner.dim
        self._vectors: dict[str, Any] = {}
        if path.exists():
            with np.load(path) as stored:
                self._vectors = {key: stored[key] for key in stored.files}
        self._dirty = False

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model}|{self.dim}|{text}".encode()).hexdigest()[:32]

    async def embed(self, texts: Sequence[str]) -> Vectors:
        keys = [self._key(t) for t in texts]
        missing = list(
            dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self._vectors)
        )
        if missing:
            for text, vector in zip(missing, await self.inner.embed(missing), strict=True):
                self._vectors[self._key(text)] = vector
            self._dirty = True
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def save(self) -> None:
        if self._dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, **self._vectors)
            tmp.replace(self.path)
            self._dirty = False


class Report:
    def __init__(self, key: str, title: str, body: str) -> None:
        self.key, self.title, self.body = key, title, body

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.body}"


def load(data: Path) -> tuple[list[Report], dict[str, set[str]]]:
    with (data / "SeaMonkey_bugs.csv").open(encoding="utf-8", newline="") as f:
        reports = [
            # a few reports have no description: their summary is all they say
            Report(row["Issue id"], row["Summary"], row["Description"].strip() or row["Summary"])
            for row in csv.DictReader(f)
        ]
    keys = {r.key for r in reports}
    duplicates: dict[str, set[str]] = defaultdict(set)
    with (data / "SeaMonkey_bugs-combined.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            a, b = row["Issue id"], row["Duplicate id"]
            if a in keys and b in keys and a != b:
                duplicates[a].add(b)
                duplicates[b].add(a)
    return reports, dict(duplicates)


class Scores:
    def __init__(self, ranks: list[int | None]) -> None:
        n = len(ranks) or 1
        self.r1 = sum(r == 1 for r in ranks) / n
        self.r5 = sum(r is not None and r <= 5 for r in ranks) / n
        self.mrr = sum(1 / r for r in ranks if r) / n

    def row(self, label: str) -> str:
        return f"   {label:<58}{self.r1:>7.3f}{self.r5:>7.3f}{self.mrr:>7.3f}"


def rank_of(keys: Sequence[str | None], query: str, expected: set[str]) -> int | None:
    others = [k for k in keys if k != query]
    return next((i for i, k in enumerate(others, start=1) if k in expected), None)


# --- baselines outside the store -----------------------------------------------------------


def bm25s_ranks(
    reports: list[Report], queries: list[str], dup: dict[str, set[str]]
) -> list[int | None]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    corpus = bm25s.tokenize(
        [r.text for r in reports], stopwords="en", stemmer=stemmer, show_progress=False
    )
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    by_key = {r.key: r for r in reports}
    tokens = bm25s.tokenize(
        [by_key[q].text for q in queries], stopwords="en", stemmer=stemmer, show_progress=False
    )
    found, _ = retriever.retrieve(tokens, k=DEPTH + 1, show_progress=False)
    return [
        rank_of([reports[i].key for i in row], q, dup[q])
        for q, row in zip(queries, found, strict=True)
    ]


async def minilm_ranks(
    embedder: Embedder, reports: list[Report], queries: list[str], dup: dict[str, set[str]]
) -> list[int | None]:
    vectors = await embedder.embed([r.text for r in reports])
    index = {r.key: i for i, r in enumerate(reports)}
    ranks = []
    for q in queries:
        order = np.argsort(-(vectors @ vectors[index[q]]), kind="stable")[: DEPTH + 1]
        ranks.append(rank_of([reports[i].key for i in order], q, dup[q]))
    return ranks


# --- fusion: the grid and its cross-validation ---------------------------------------------


# The weighted score of short queries: the weights bench/knowledge.py chose on the short
# sets (paraphrases, Loghub lines) before BM25 existed; what is learned here is how long
# queries are ordered (rank fusion of semantic and BM25) and from what length. A query
# below that length is ordered by this score alone, exactly as before.
SHORT_SCORE = {"semantic": 0.65, "lexical": 0.35, "bm25": 0.0}


def grid() -> list[Fusion]:
    """The weighted score alone, or mixed by query length with a rank fusion of semantic
    and BM25 (its weights, k, and the length from which it orders alone)."""
    configs = [Fusion(**SHORT_SCORE)]
    for rank_sem, k, long_words in itertools.product(
        (0.3, 0.4, 0.5, 0.6, 0.7, 0.8), (2.0, 5.0, 10.0, 20.0, 60.0), (None, 50.0, 100.0, 200.0)
    ):
        configs.append(
            Fusion(
                **SHORT_SCORE,
                rank_k=k,
                rank_semantic=rank_sem,
                rank_bm25=round(1 - rank_sem, 2),
                long_words=long_words,
            )
        )
    return configs


# What the store fetches for a query on the short path (no BM25, no kNN over windows) and
# on the long path (every signal): a configuration is scored on the candidates the store
# would really return it for each query.
SHORT_PATH = Fusion(**SHORT_SCORE)
LONG_PATH = Fusion(**SHORT_SCORE, rank_k=60.0, long_words=None)

Candidates = list[tuple[str, Signals]]


class Case:
    """One query of a dev set: the candidates search returned, with their signals, as
    fetched on the short path and on the long path."""

    def __init__(
        self, query: str, text: str, expected: set[str], short: Candidates, full: Candidates
    ) -> None:
        self.query, self.expected = query, expected
        self.words = len(mask(text).split())  # what the store counts
        self._short, self._full = [s for _, s in short], [s for _, s in full]
        self._key_of = {s.id: key for key, s in [*short, *full]}

    def rank(self, fusion: Fusion) -> int | None:
        full = fusion.needs_bm25(self.words) or fusion.needs_windows(self.words)
        fused = fuse(self._full if full else self._short, fusion, "hybrid", self.words)
        order = [self._key_of[s.id] for s, _ in fused]
        return rank_of(order[: DEPTH + 1], self.query, self.expected)


async def case_of(kg: KnowledgeGraph, query: str, text: str, expected: set[str]) -> Case:
    return Case(
        query,
        text,
        expected,
        await candidates_of(kg, text, SHORT_PATH),
        await candidates_of(kg, text, LONG_PATH),
    )


def objective(per_set: list[list[list[int | None]]]) -> list[tuple[bool, float, float]]:
    """Per configuration (the first being the short-query score alone): whether it keeps
    the short sets' top-1 (their quality is to be kept, not traded), then the worst over
    the sets of its MRR over that set's best MRR, then the mean MRR. One configuration for
    every corpus, chosen so that no corpus pays for the others."""
    mrr = [[Scores(ranks).mrr for ranks in sets] for sets in per_set]
    top1 = [[Scores(ranks).r1 for ranks in sets[1:]] for sets in per_set]
    best = [max(row[j] for row in mrr) or 1.0 for j in range(len(mrr[0]))]
    return [
        (
            all(t >= b for t, b in zip(top1[i], top1[0], strict=True)),
            min(v / b for v, b in zip(row, best, strict=True)),
            sum(row) / len(row),
        )
        for i, row in enumerate(mrr)
    ]


def _argmax(values: list[tuple[bool, float, float]]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def cross_validate(
    cases: list[Case], others: dict[str, list[Case]], folds: int, seed: int = 0
) -> tuple[Fusion, list[int | None], list[int | None], list[Fusion], dict[str, Scores]]:
    """K-fold over the duplicate pairs of `cases`; the `others` sets are in every training
    part (one configuration for all sets). Returns the best on everything, its in-sample
    ranks, the held-out ranks in query order, the per-fold picks and the best's scores on
    the other sets."""
    configs = grid()
    table = {i: [case.rank(c) for case in cases] for i, c in enumerate(configs)}
    other_table = {
        i: {name: [case.rank(c) for case in set_] for name, set_ in others.items()}
        for i, c in enumerate(configs)
    }
    # folds over duplicate pairs: a pair's two directions are never split
    groups: dict[frozenset[str], list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        groups[frozenset({case.query, min(case.expected)})].append(i)
    pairs = sorted(groups, key=lambda g: sorted(g))
    random.Random(seed).shuffle(pairs)
    held: list[int | None] = [None] * len(cases)
    picks = []
    for f in range(folds):
        test = {i for n, g in enumerate(pairs) if n % folds == f for i in groups[g]}
        train = [i for i in range(len(cases)) if i not in test]

        best = _argmax(
            objective(
                [
                    [[table[c][i] for i in train], *other_table[c].values()]
                    for c in range(len(configs))
                ]
            )
        )
        picks.append(configs[best])
        for i in test:
            held[i] = table[best][i]
    best_all = _argmax(
        objective([[table[c], *other_table[c].values()] for c in range(len(configs))])
    )
    return (
        configs[best_all],
        table[best_all],
        held,
        picks,
        {name: Scores(r) for name, r in other_table[best_all].items()},
    )


async def candidates_of(kg: KnowledgeGraph, text: str, fusion: Fusion) -> Candidates:
    hits = await kg.find_solutions(text, limit=10_000, fusion=fusion)
    return [
        (
            str(h.problem.key),
            Signals(id=h.problem.id, semantic=h.semantic, lexical=h.lexical, bm25=h.bm25),
        )
        for h in hits
    ]


async def fixture_cases(admin: str, embedder: Embedder, name: str) -> list[Case]:
    """The short-text dev sets of bench/knowledge.py: paraphrased problem descriptions and
    real duplicate Loghub lines. In every training part: one configuration for all sets."""
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = admin.rsplit("/", 1)[0] + "/" + name
    await migrate(url, embedder.dim)
    pool = await create_pool(url)
    try:
        kg = KnowledgeGraph(pool, embedder)
        lines = (FIXTURES / f"{name}_problems.jsonl").read_text().splitlines()
        report = await import_lines(kg, lines)
        assert not report.errors, report.errors[:3]
        await pool.execute("ANALYZE knowledge_nodes")
        return [
            await case_of(kg, "", case.query, set(case.expected))
            for case in load_cases(FIXTURES / f"{name}_queries.jsonl")
        ]
    finally:
        await pool.close()


# --- the run -------------------------------------------------------------------------------


async def run(data: Path, folds: int, cache: Path) -> None:
    reports, dup = load(data)
    queries = [r.key for r in reports if r.key in dup]
    pairs = sum(len(v) for v in dup.values()) // 2
    print(f"{len(reports)} reports, {pairs} duplicate pairs inside the set, {len(queries)} queries")
    embedder = DiskCachedEmbedder(MiniLMEmbedder(), cache)
    home = Path(tempfile.mkdtemp(prefix="aiops-bench-dup-"))
    stack = DevStack(
        home, postgres_port=free_port(), redis_port=free_port(), services=("postgres",)
    )
    state = (await stack.up()).state
    try:
        admin = state.services["postgres"].url.rsplit("/", 1)[0] + "/postgres"
        conn = await asyncpg.connect(admin)
        await conn.execute('CREATE DATABASE "duplicates"')
        await conn.close()
        url = admin.rsplit("/", 1)[0] + "/duplicates"
        await migrate(url, embedder.dim)
        pool = await create_pool(url)
        try:
            kg = KnowledgeGraph(pool, embedder)
            started = time.perf_counter()
            # the model is fastest on batches: embed every text the store will ask for at
            # once (into the disk cache), then write the reports one by one through the store
            wanted = []
            for r in reports:
                problem = ProblemIn(key=r.key, title=r.title, description=r.body)
                wanted += [problem_text(problem), *problem_chunks(r.body, r.title)]
                wanted += [
                    texts.problem_text(mask(r.text), None, []),
                    *problem_chunks(mask(r.text), None),
                ]
            for i in range(0, len(wanted), 512):
                await embedder.embed(wanted[i : i + 512])
                embedder.save()
                print(f"   embedded {min(i + 512, len(wanted))}/{len(wanted)} texts", flush=True)
            for i, r in enumerate(reports, start=1):
                await kg.upsert_problem(ProblemIn(key=r.key, title=r.title, description=r.body))
                if i % 200 == 0:
                    embedder.save()
                    print(f"   indexed {i}/{len(reports)}", flush=True)
            embedder.save()
            chunks = await pool.fetchval("SELECT count(*) FROM knowledge_chunks")
            await pool.execute("ANALYZE knowledge_nodes")
            print(
                f"indexed in {time.perf_counter() - started:.0f} s ({chunks} extra windows)",
                flush=True,
            )
            by_key = {r.key: r for r in reports}
            results: dict[str, Scores] = {}
            latency: list[float] = []
            for mode in ("hybrid", "semantic", "lexical", "bm25"):
                ranks = []
                for q in queries:
                    t = time.perf_counter()
                    hits = await kg.find_solutions(by_key[q].text, limit=DEPTH + 1, mode=mode)
                    if mode == "hybrid":
                        latency.append((time.perf_counter() - t) * 1000)
                    ranks.append(rank_of([h.problem.key for h in hits], q, dup[q]))
                results[mode] = Scores(ranks)
            embedder.save()
            # every candidate's signals, for learning the fusion
            cases = [await case_of(kg, q, by_key[q].text, dup[q]) for q in queries]
        finally:
            await pool.close()
        others = {}
        for name in FIXTURE_SETS:
            others[name] = await fixture_cases(admin, embedder, name)
            embedder.save()
    finally:
        stack.down()
        shutil.rmtree(home, ignore_errors=True)
    bm25_lib = Scores(bm25s_ranks(reports, queries, dup))
    minilm = Scores(await minilm_ranks(embedder, reports, queries, dup))
    embedder.save()
    best, in_sample, held, picks, other_scores = cross_validate(cases, others, folds)
    print(f"\n   {'':<58}{'R@1':>7}{'R@5':>7}{'MRR':>7}")
    print(results["hybrid"].row("aiops search as shipped (FUSION)"))
    replay = Scores([case.rank(FUSION) for case in cases])
    print(replay.row("  the same, replayed on the cases (must equal the line above)"))
    print(Scores(held).row(f"aiops, fusion learned, held-out ({folds}-fold CV over pairs)"))
    print(Scores(in_sample).row("aiops, fusion learned, in-sample (optimistic)"))
    print(results["semantic"].row("  signal alone: semantic (MiniLM, best window)"))
    print(results["lexical"].row("  signal alone: lexical (IDF share)"))
    print(results["bm25"].row("  signal alone: bm25 (BM25F in PostgreSQL)"))
    print(bm25_lib.row("BM25 baseline: bm25s, stemmed, stop words"))
    print(minilm.row("MiniLM alone: one vector per report, cosine"))
    print("\n   the other dev sets (short texts), same learned configuration, and as shipped:")
    score_alone = Fusion(**SHORT_SCORE)
    for name, score in other_scores.items():
        print(score.row(f"  {name}: learned"))
        print(Scores([case.rank(FUSION) for case in others[name]]).row(f"  {name}: shipped"))
        changed = sum(c.rank(FUSION) != c.rank(score_alone) for c in others[name])
        long = sum(FUSION.ranked(c.words) for c in others[name])
        print(
            f"     {name}: {long}/{len(others[name])} queries on the shipped long path;"
            f" {changed} ranked otherwise than by the score alone"
        )
    words = sorted(case.words for case in cases)
    print(
        f"\n   query words: SeaMonkey min {words[0]}, median {words[len(words) // 2]}; longest"
        + "".join(f" {n} {max(c.words for c in others[n])}" for n in others)
    )
    if FUSION.long_words is not None:
        long = sum(c.words >= FUSION.long_words for c in cases)
        print(f"   SeaMonkey queries on the shipped long path: {long}/{len(cases)}")
    print(f"   shipped FUSION: {FUSION.model_dump()}")
    print(f"   learned on all queries: {best.model_dump()}")
    for i, pick in enumerate(picks, start=1):
        print(f"   fold {i} pick: {pick.model_dump()}")
    ahead = results["hybrid"].r5 > bm25_lib.r5 and results["hybrid"].r5 > results["bm25"].r5
    print(
        f"\n   target R@5 >= 0.85 -> {'met' if results['hybrid'].r5 >= 0.85 else 'NOT met'}"
        f" (shipped); ahead of BM25 -> {'yes' if ahead else 'NO'}; search p50 "
        f"{float(np.median(latency)):.0f} ms per long query (embeddings cached, shared CPU)"
    )


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "aiops-bench-duplicates.npz"
    )
    args = parser.parse_args()
    asyncio.run(run(args.data, args.folds, args.cache))
