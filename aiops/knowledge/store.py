"""The knowledge graph on PostgreSQL + pgvector: problems, solutions, insights and their edges.

Text is masked before it is embedded. Search is hybrid: full text weighted by how rare each
word is (lexical.py: identifiers survive) fused with the HNSW kNN (paraphrases match), then
solutions follow `solves` edges and are ranked by relevance times the learned success
posterior.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import numpy as np

from aiops.embeddings.base import Embedder
from aiops.embeddings.cache import CachedEmbedder
from aiops.fingerprint import mask_variables
from aiops.knowledge import texts
from aiops.knowledge.bm25 import Bm25Scorer
from aiops.knowledge.errors import KnowledgeError
from aiops.knowledge.fusion import FUSION, Fusion, Signals, fuse
from aiops.knowledge.lexical import LexicalScorer
from aiops.knowledge.mining import MiningReport, extract_patterns
from aiops.knowledge.models import (
    ProblemIn,
    ProblemRecord,
    ProblemView,
    SearchHit,
    SolutionHit,
    SolutionIn,
    SolutionStats,
)
from aiops.knowledge.stats import (
    EmbeddingReport,
    GraphStats,
    as_array,
    graph_stats,
    verify_embeddings,
)
from aiops.knowledge.traversal import Direction, TraversalNode, traverse
from aiops.policy.models import ActionSpec
from aiops.privacy import mask

_CANDIDATES = 50
SearchMode = Literal["hybrid", "semantic", "lexical", "bm25"]
_EWMA = 0.3  # weight of the newest resolution time
# HNSW candidates kept per search (pgvector's default is 40): on 100k problems with the
# shape of real embeddings, recall@10 against exact search was 0.86 at 40, 0.95 at 200 and
# 0.97 at 400, for 1.3, 1.1 and 1.7 ms (bench/knowledge.py)
EF_SEARCH = 400
# Up to this many problems with a solution, diagnosis compares with each of them exactly.
EXACT_SOLVABLE = 5000
_COUNT_TTL_S = 30.0


def _hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def problem_fingerprint(problem: ProblemIn) -> str:
    """Stable id of a problem: service, category and the text with its variables masked."""
    return _hash(problem.service or "", problem.category, mask_variables(problem.description))


def key_fingerprint(key: str) -> str:
    """The fingerprint of a problem written with an external key: the key is its identity."""
    return "key:" + _hash(key)


def query_texts(text: str, mode: SearchMode = "hybrid") -> tuple[str, list[str]]:
    """A search text masked, and the texts its vectors are embedded from, in one call: the
    whole query, then (semantic and hybrid search) its extra windows when it is long."""
    masked = mask(text)
    extra = texts.problem_chunks(masked, None) if mode in ("hybrid", "semantic") else []
    return masked, [texts.problem_text(masked, None, []), *extra]


def problem_text(problem: ProblemIn) -> str:
    return texts.problem_text(
        problem.description, problem.template, problem.error_patterns, problem.title
    )


class KnowledgeGraph:
    def __init__(
        self, pool: asyncpg.Pool, embedder: Embedder, similarity_threshold: float = 0.92
    ) -> None:
        self._pool = pool
        self._embedder = embedder
        self.similarity_threshold = similarity_threshold
        self._lexical = LexicalScorer()
        self._bm25 = Bm25Scorer()
        self._solvable: tuple[float, int] | None = None  # (when counted, how many)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def _embed(self, text: str) -> Any:
        return (await self._embedder.embed([text]))[0]

    # --- problems ----------------------------------------------------------------------

    async def add_problem(self, problem: ProblemIn) -> ProblemRecord:
        """Insert, or count one more occurrence of the same fingerprint; link near-duplicates."""
        fingerprint = problem.fingerprint or problem_fingerprint(problem)
        vector, chunks = await self._embed_problem(problem)
        now = datetime.now(UTC).isoformat()
        data = {
            "title": problem.title,
            "description": problem.description,
            "category": problem.category,
            "severity": problem.severity,
            "error_patterns": problem.error_patterns,
            "context": problem.context,
            "key": problem.key,
            "template": problem.template,
            "fingerprint": fingerprint,
            "occurrence_count": problem.occurrences,
            "first_seen": now,
            "last_seen": now,
        }
        row = await self._pool.fetchrow(
            """
            INSERT INTO knowledge_nodes (node_type, fingerprint, data, embedding)
            VALUES ('problem', $1, $2, $3)
            ON CONFLICT (node_type, fingerprint) DO UPDATE SET
                data = knowledge_nodes.data || jsonb_build_object(
                    'occurrence_count',
                    coalesce((knowledge_nodes.data->>'occurrence_count')::int, 0) + $4,
                    'last_seen', $5::text),
                updated_at = now()
            RETURNING id, (xmax = 0) AS created, (data->>'occurrence_count')::int AS count
            """,
            fingerprint,
            data,
            vector,
            problem.occurrences,
            now,
        )
        assert row is not None
        record = ProblemRecord(
            id=str(row["id"]),
            fingerprint=fingerprint,
            created=row["created"],
            occurrence_count=row["count"],
            status="created" if row["created"] else "counted",
        )
        if record.created:
            await self._write_chunks(row["id"], chunks)
            record.similar_to = await self._link_similar(row["id"], vector, problem)
        return record

    async def _embed_problem(self, problem: ProblemIn) -> tuple[Any, Any]:
        """The node's vector and those of its extra windows, in one call to the model."""
        extra = texts.problem_chunks(problem.description, problem.title)
        vectors = await self._embedder.embed([problem_text(problem), *extra])
        return vectors[0], vectors[1:]

    async def _write_chunks(self, node_id: Any, vectors: Any, conn: Any = None) -> None:
        """Replace the node's window vectors (none for a short problem)."""
        async with AsyncExitStack() as stack:
            if conn is None:
                conn = await stack.enter_async_context(self._pool.acquire())
                await stack.enter_async_context(conn.transaction())
            await conn.execute("DELETE FROM knowledge_chunks WHERE node_id = $1", node_id)
            if len(vectors):
                await conn.executemany(
                    "INSERT INTO knowledge_chunks (node_id, ord, embedding) VALUES ($1, $2, $3)",
                    [(node_id, i + 1, vector) for i, vector in enumerate(vectors)],
                )

    async def upsert_problem(self, problem: ProblemIn) -> ProblemRecord:
        """Write a problem identified by its external `key` (what `aiops kg import` does):
        created the first time, its text updated when it changed, untouched otherwise. Unlike
        add_problem, writing it again is not another occurrence."""
        if not problem.key:
            raise KnowledgeError("upsert_problem needs a problem with a key")
        fingerprint = key_fingerprint(problem.key)
        content = {
            "title": problem.title,
            "description": problem.description,
            "category": problem.category,
            "severity": problem.severity,
            "error_patterns": problem.error_patterns,
            "context": problem.context,
            "template": problem.template,
            "key": problem.key,
        }
        existing = await self._pool.fetchrow(
            "SELECT id, data FROM knowledge_nodes WHERE node_type = 'problem' AND fingerprint = $1",
            fingerprint,
        )
        if existing is not None and all(existing["data"].get(k) == v for k, v in content.items()):
            return ProblemRecord(
                id=str(existing["id"]),
                fingerprint=fingerprint,
                created=False,
                occurrence_count=int(existing["data"].get("occurrence_count") or 1),
                status="unchanged",
            )
        vector, chunks = await self._embed_problem(problem)
        now = datetime.now(UTC).isoformat()
        data = {
            **content,
            "fingerprint": fingerprint,
            "occurrence_count": problem.occurrences,
            "first_seen": now,
            "last_seen": now,
        }
        row = await self._pool.fetchrow(
            """
            INSERT INTO knowledge_nodes (node_type, fingerprint, data, embedding)
            VALUES ('problem', $1, $2, $3)
            ON CONFLICT (node_type, fingerprint) DO UPDATE SET
                data = knowledge_nodes.data || $4::jsonb,
                embedding = EXCLUDED.embedding,
                updated_at = now()
            RETURNING id, (xmax = 0) AS created, (data->>'occurrence_count')::int AS count
            """,
            fingerprint,
            data,
            vector,
            content,
        )
        assert row is not None
        record = ProblemRecord(
            id=str(row["id"]),
            fingerprint=fingerprint,
            created=row["created"],
            occurrence_count=row["count"],
            status="created" if row["created"] else "updated",
        )
        await self._write_chunks(row["id"], chunks)
        if record.created:
            record.similar_to = await self._link_similar(row["id"], vector, problem)
        return record

    async def _link_similar(self, node_id: Any, vector: Any, problem: ProblemIn) -> list[str]:
        async with self._pool.acquire() as conn, conn.transaction():
            await _prefer_hnsw(conn)
            rows = await conn.fetch(
                """
                SELECT id, 1 - (embedding <=> $1) AS sim FROM knowledge_nodes
                WHERE node_type = 'problem' AND id <> $2 AND data->>'category' = $3
                  AND coalesce(data->'context'->>'service', '') = coalesce($4, '')
                ORDER BY embedding <=> $1 LIMIT 5
                """,
                vector,
                node_id,
                problem.category,
                problem.service,
            )
            linked = []
            for row in rows:
                if row["sim"] >= self.similarity_threshold:
                    await self.add_edge(row["id"], node_id, "similar_to", float(row["sim"]), conn)
                    linked.append(str(row["id"]))
            return linked

    # --- solutions and edges ------------------------------------------------------------

    async def add_solution(self, problem_id: str, solution: SolutionIn) -> str:
        actions = [a.model_dump(mode="json") for a in solution.actions]
        fingerprint = _hash(solution.description, json.dumps(actions, sort_keys=True))
        vector = await self._embed(mask(solution.description))
        data = {
            **solution.model_dump(mode="json"),
            "success_rate": 0.0,
            "attempt_count": 0,
            "success_count": 0,
            "avg_resolution_time": None,
        }
        node_id = await self._pool.fetchval(
            """
            INSERT INTO knowledge_nodes (node_type, fingerprint, data, embedding)
            VALUES ('solution', $1, $2, $3)
            ON CONFLICT (node_type, fingerprint) DO UPDATE SET updated_at = now()
            RETURNING id
            """,
            fingerprint,
            data,
            vector,
        )
        await self.add_edge(node_id, problem_id, "solves")
        return str(node_id)

    async def add_edge(
        self,
        from_node: Any,
        to_node: Any,
        relationship: str,
        weight: float = 1.0,
        conn: Any = None,
    ) -> None:
        await (conn or self._pool).execute(
            """
            INSERT INTO knowledge_edges (from_node, to_node, relationship, weight)
            VALUES ($1::uuid, $2::uuid, $3, $4)
            ON CONFLICT (from_node, to_node, relationship)
            DO UPDATE SET weight = EXCLUDED.weight, updated_at = now()
            """,
            str(from_node),
            str(to_node),
            relationship,
            weight,
        )

    async def solution_stats(self, solution_id: str) -> SolutionStats:
        data = await self._pool.fetchval(
            "SELECT data FROM knowledge_nodes WHERE id = $1::uuid AND node_type = 'solution'",
            solution_id,
        )
        if data is None:
            raise KeyError(f"no solution {solution_id}")
        return _stats(solution_id, data)

    async def update_solution_outcome(
        self, solution_id: str, success: bool, resolution_time_s: float | None, conn: Any = None
    ) -> SolutionStats:
        """One atomic UPDATE computed from the row itself: concurrent outcomes all count."""
        data = await (conn or self._pool).fetchval(
            """
            UPDATE knowledge_nodes SET data = data || jsonb_build_object(
                'attempt_count', coalesce((data->>'attempt_count')::int, 0) + 1,
                'success_count', coalesce((data->>'success_count')::int, 0) + $2::int,
                'success_rate', (coalesce((data->>'success_count')::int, 0) + $2::int)::float8
                                / (coalesce((data->>'attempt_count')::int, 0) + 1),
                'avg_resolution_time', CASE
                    WHEN $3::float8 IS NULL THEN data->'avg_resolution_time'
                    WHEN jsonb_typeof(data->'avg_resolution_time') IS DISTINCT FROM 'number'
                        THEN to_jsonb($3::float8)
                    ELSE to_jsonb((1 - $4::float8) * (data->>'avg_resolution_time')::float8
                                  + $4::float8 * $3::float8)
                END),
                updated_at = now()
            WHERE id = $1::uuid AND node_type = 'solution'
            RETURNING data
            """,
            solution_id,
            1 if success else 0,
            resolution_time_s,
            _EWMA,
        )
        if data is None:
            raise KeyError(f"no solution {solution_id}")
        return _stats(solution_id, data)

    async def record_outcome_once(
        self, key: str, solution_id: str, success: bool, resolution_time_s: float | None
    ) -> SolutionStats:
        """update_solution_outcome, applied once per key (a retried activity counts once)."""
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO learning_applied (key) VALUES ($1) ON CONFLICT DO NOTHING"
                " RETURNING true",
                key,
            )
            if fresh:
                return await self.update_solution_outcome(
                    solution_id, success, resolution_time_s, conn
                )
        # read after the connection is back: holding it while waiting for another is how a
        # busy pool deadlocks
        return await self.solution_stats(solution_id)

    async def add_insight(
        self, key: str, problem_id: str | None, solution_id: str | None, outcome: str, summary: str
    ) -> str:
        """An insight node per learning run (idempotent on key) linked to what it is about."""
        data = {"outcome": outcome, "summary": summary, "description": summary}
        node_id = await self._pool.fetchval(
            """
            INSERT INTO knowledge_nodes (node_type, fingerprint, data) VALUES ('insight', $1, $2)
            ON CONFLICT (node_type, fingerprint) DO UPDATE SET updated_at = now() RETURNING id
            """,
            key,
            data,
        )
        if problem_id:
            await self.add_edge(problem_id, node_id, "leads_to")
        if solution_id:
            relation = "validates" if outcome == "healed" else "conflicts_with"
            await self.add_edge(node_id, solution_id, relation)
        return str(node_id)

    async def get_problem_count(self) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM knowledge_nodes WHERE node_type = 'problem'"
        )
        return count

    # --- graph: traversal, statistics, embeddings, patterns -----------------------------

    async def traverse(
        self,
        node_id: str,
        max_hops: int = 3,
        relationships: list[str] | None = None,
        direction: Direction = "both",
        limit: int = 1000,
        include_data: bool = False,
    ) -> list[TraversalNode]:
        return await traverse(
            self._pool, node_id, max_hops, relationships, direction, limit, include_data
        )

    async def stats(self) -> GraphStats:
        return await graph_stats(self._pool)

    async def verify_embeddings(self, sample: int = 0) -> EmbeddingReport:
        return await verify_embeddings(self._pool, self._embedder, sample)

    async def extract_patterns(self, min_occurrences: int = 3) -> MiningReport:
        return await extract_patterns(self._pool, self._embedder, min_occurrences)

    # --- search ------------------------------------------------------------------------

    async def prepare_search(self, text: str) -> None:
        """Embed what a search for `text` will embed, in the same call, so that a caching
        embedder has the vectors when the search comes (recording an incident's problem
        does this before its diagnosis searches). Without a cache, nothing to prepare."""
        if isinstance(self._embedder, CachedEmbedder):
            await self._embedder.embed(query_texts(text)[1])

    async def find_solutions(
        self,
        text: str,
        limit: int = 5,
        service: str | None = None,
        require_solutions: bool = False,
        mode: SearchMode = "hybrid",
        fusion: Fusion = FUSION,
    ) -> list[SearchHit]:
        """Problems most like `text`, best first; with require_solutions only those that have
        a solution (diagnosis: recorded problems without one must not crowd out known ones).

        `mode` semantic, lexical or bm25 runs one signal alone (for measuring it). In hybrid
        mode BM25 and the kNN over problems' windows run only when `fusion` weighs them for
        a query of this length (the long-query path): a short query pays for neither."""
        # a long query is embedded window by window too: its best window against the
        # problem's best window is the semantic score
        masked, query = query_texts(text, mode)
        words = len(masked.split())
        hybrid = mode == "hybrid"
        query_vectors = await self._embedder.embed(query)
        vector = query_vectors[0]
        async with self._pool.acquire() as conn, conn.transaction():
            semantic: list[Any] = []
            if mode in ("hybrid", "semantic"):
                semantic = await self._semantic(conn, vector, service, require_solutions)
                if not hybrid or fusion.needs_windows(words):
                    semantic += await self._chunk_neighbours(conn, query_vectors)
            lexical = (
                await self._lexical.scores(conn, masked, _CANDIDATES, service, require_solutions)
                if mode in ("hybrid", "lexical")
                else {}
            )
            bm25 = (
                await self._bm25.scores(conn, masked, _CANDIDATES, service, require_solutions)
                if mode == "bm25" or (hybrid and fusion.needs_bm25(words))
                else {}
            )
            ids = list({row["id"] for row in semantic} | set(lexical) | set(bm25))
            rows = await conn.fetch(
                """
                SELECT id, data, embedding FROM knowledge_nodes
                WHERE id = ANY($1::uuid[])
                  AND ($2::text IS NULL OR data->'context'->>'service' = $2)
                  AND (NOT $3 OR (SELECT true FROM knowledge_edges e
                       WHERE e.to_node = knowledge_nodes.id AND e.relationship = 'solves'
                       LIMIT 1))
                """,
                ids,
                service,
                require_solutions,
            )
            chunk_rows = await conn.fetch(
                "SELECT node_id, embedding FROM knowledge_chunks WHERE node_id = ANY($1::uuid[])",
                [row["id"] for row in rows],
            )
        windows: dict[Any, list[Any]] = {}
        for chunk in chunk_rows:
            windows.setdefault(chunk["node_id"], []).append(as_array(chunk["embedding"]))
        queries = np.asarray(query_vectors, dtype=np.float32)
        signals: list[Signals] = []
        for row in rows:
            own = [as_array(row["embedding"])] if row["embedding"] is not None else []
            stacked = own + windows.get(row["id"], [])
            sem = max(0.0, float((np.stack(stacked) @ queries.T).max())) if stacked else 0.0
            signals.append(
                Signals(
                    id=row["id"],
                    semantic=sem,
                    lexical=lexical.get(row["id"], 0.0),
                    bm25=bm25.get(row["id"], 0.0),
                )
            )
        fused = fuse(signals, fusion, mode, words)
        best = fused[:limit]
        by_id = {row["id"]: row for row in rows}
        solutions = await self._solutions_for([item.id for item, _ in best])
        hits = []
        for item, relevance in best:
            data = by_id[item.id]["data"]
            ranked = sorted(
                (_solution_hit(sid, sdata, relevance) for sid, sdata in solutions.get(item.id, [])),
                key=lambda s: s.score,
                reverse=True,
            )
            hits.append(
                SearchHit(
                    problem=ProblemView(
                        id=str(item.id),
                        key=data.get("key"),
                        title=data.get("title"),
                        description=data.get("description", ""),
                        category=data.get("category"),
                        severity=data.get("severity"),
                        service=(data.get("context") or {}).get("service"),
                        occurrence_count=int(data.get("occurrence_count") or 1),
                        last_seen=data.get("last_seen"),
                    ),
                    similarity=round(relevance, 4),
                    semantic=round(item.semantic, 4),
                    lexical=round(item.lexical, 4),
                    bm25=round(item.bm25, 4),
                    why=fusion.explain(item, words),
                    solutions=ranked,
                )
            )
        return hits

    async def _chunk_neighbours(self, conn: Any, vectors: Any) -> list[Any]:
        """Problems owning the windows nearest to any of the query's windows."""
        found: list[Any] = []
        await _prefer_hnsw(conn)
        for vector in vectors:
            found += await conn.fetch(
                "SELECT node_id AS id FROM knowledge_chunks ORDER BY embedding <=> $1 LIMIT $2",
                vector,
                _CANDIDATES,
            )
        await conn.execute("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort")
        return found

    async def _semantic(
        self, conn: Any, vector: Any, service: str | None, require_solutions: bool
    ) -> list[Any]:
        """The nearest problems by embedding, best first, under the filters."""
        if require_solutions and await self._solvable_count(conn) <= EXACT_SOLVABLE:
            # few problems have a solution: compare with each of them exactly; an HNSW scan
            # would visit thousands of unsolved problems to find them
            return list(
                await conn.fetch(
                    """
                    SELECT id FROM (
                        SELECT DISTINCT n.id, n.embedding <=> $1 AS distance
                        FROM knowledge_edges e JOIN knowledge_nodes n ON n.id = e.to_node
                        WHERE e.relationship = 'solves' AND n.node_type = 'problem'
                          AND ($2::text IS NULL OR n.data->'context'->>'service' = $2)
                        OFFSET 0
                    ) solvable
                    ORDER BY distance LIMIT $3
                    """,
                    vector,
                    service,
                    _CANDIDATES,
                )
            )
        await _prefer_hnsw(conn)
        rows = await conn.fetch(
            """
            SELECT id FROM knowledge_nodes
            WHERE node_type = 'problem'
              AND ($2::text IS NULL OR data->'context'->>'service' = $2)
              AND (NOT $4 OR (SELECT true FROM knowledge_edges e
                   WHERE e.to_node = knowledge_nodes.id AND e.relationship = 'solves' LIMIT 1))
            ORDER BY embedding <=> $1 LIMIT $3
            """,
            vector,
            service,
            _CANDIDATES,
            require_solutions,
        )
        await conn.execute("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort")
        return list(rows)

    async def _solvable_count(self, conn: Any) -> int:
        """How many problems have a solution (at most EXACT_SOLVABLE + 1), cached briefly."""
        now = time.monotonic()
        if self._solvable is None or now - self._solvable[0] > _COUNT_TTL_S:
            count = await conn.fetchval(
                "SELECT count(*) FROM (SELECT DISTINCT to_node FROM knowledge_edges"
                " WHERE relationship = 'solves' LIMIT $1) s",
                EXACT_SOLVABLE + 1,
            )
            self._solvable = (now, int(count))
        return self._solvable[1]

    async def _solutions_for(self, problem_ids: list[Any]) -> dict[Any, list[tuple[Any, Any]]]:
        rows = await self._pool.fetch(
            """
            SELECT e.to_node AS problem_id, s.id, s.data FROM knowledge_edges e
            JOIN knowledge_nodes s ON s.id = e.from_node AND s.node_type = 'solution'
            WHERE e.relationship = 'solves' AND e.to_node = ANY($1::uuid[])
            """,
            problem_ids,
        )
        found: dict[Any, list[tuple[Any, Any]]] = {}
        for row in rows:
            found.setdefault(row["problem_id"], []).append((row["id"], row["data"]))
        return found


async def _prefer_hnsw(conn: Any) -> None:
    """For the rest of the transaction, filtered kNN goes through the HNSW index.

    With a filter on jsonb fields the planner guesses one matching row and scans the whole
    table instead (11 ms at 20k problems, against 0.9 ms through the index); iterative scans
    keep reading the index until enough rows pass the filter (pgvector 0.8). The "has a
    solution" filter is a scalar subquery, not EXISTS: EXISTS let the planner hash every
    solves edge for each search (176 ms at 200k edges, against 0.3 ms probing per row)."""
    await conn.execute(
        f"SET LOCAL hnsw.ef_search = {EF_SEARCH}; SET LOCAL hnsw.iterative_scan = relaxed_order;"
        " SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;"
        " SET LOCAL enable_sort = off"
    )


def _stats(solution_id: str, data: dict[str, Any]) -> SolutionStats:
    avg = data.get("avg_resolution_time")
    return SolutionStats(
        solution_id=solution_id,
        attempt_count=int(data.get("attempt_count") or 0),
        success_count=int(data.get("success_count") or 0),
        success_rate=float(data.get("success_rate") or 0.0),
        avg_resolution_time_s=float(avg) if isinstance(avg, int | float) else None,
    )


def _solution_hit(solution_id: Any, data: dict[str, Any], relevance: float) -> SolutionHit:
    attempts = int(data.get("attempt_count") or 0)
    successes = int(data.get("success_count") or 0)
    failures = attempts - successes
    posterior = (1 + successes) / (2 + attempts)  # mean of Beta(1 + s, 1 + f)
    return SolutionHit(
        id=str(solution_id),
        description=data.get("description", ""),
        actions=[ActionSpec.model_validate(a) for a in data.get("actions", [])],
        success_rate=float(data.get("success_rate") or 0.0),
        successes=successes,
        failures=failures,
        score=round(relevance * posterior, 4),
        why=f"relevance {relevance:.2f} x posterior mean {posterior:.2f} "
        f"(Beta({1 + successes}, {1 + failures}))",
    )
