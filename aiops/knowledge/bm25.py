"""BM25F over problems, computed in PostgreSQL from the field-aware vector of migration 019.

The IDF-share scorer (lexical.py) asks which rare words a problem has at all: right for a
short query naming an identifier, blind on long reports, where two duplicates share dozens
of words and what tells them apart is how often each one comes back and in which field.
BM25 counts that: term frequency saturated by K1, normalised by the document's length (B),
with title positions counting TITLE_WEIGHT times a body position (BM25F: fields merged
before saturation).

Everything is read from the database at query time (term frequencies from the stored
tsvector, document frequencies through its GIN index, the mean length from a column), so
every process sees the same index the moment a problem is written: no in-process index to
rebuild or keep in step.

K1 and B are the textbook values (Robertson and Zaragoza, "The Probabilistic Relevance
Framework: BM25 and Beyond", 2009), not tuned on any dev set.
"""

from __future__ import annotations

import time
from typing import Any

from aiops.knowledge.lexical import document_frequencies, idf, quote, rarest

K1 = 1.2
B = 0.75
# A title word is worth this many body words: the middle of the 2-5 that BM25F studies
# report for titles, not tuned on the dev set (BM25 alone on it: 1 -> R@5 0.707, 2 -> 0.707,
# 3 -> 0.733, 5 -> 0.747; the spread is two queries of 75).
TITLE_WEIGHT = 3.0
DF_CAP = 1000
# Problems scored exactly per query: those matching the rarest query terms, up to this many.
CANDIDATE_BUDGET = 2000
_STATS_TTL_S = 30.0

_TERMS = "SELECT lexeme, cardinality(positions) AS qtf FROM unnest(aiops_bm25_query($1))"

_STATS = """
SELECT count(*) AS n, coalesce(avg(bm25_length), 0) AS avgdl
FROM knowledge_nodes WHERE node_type = 'problem'
"""

_SCORES = """
WITH candidates AS (
    SELECT id, bm25_text, bm25_length FROM knowledge_nodes
    WHERE node_type = 'problem' AND bm25_text @@ $1::tsquery
      AND ($4::text IS NULL OR data->'context'->>'service' = $4)
      AND (NOT $5 OR (SELECT true FROM knowledge_edges e
           WHERE e.to_node = knowledge_nodes.id AND e.relationship = 'solves' LIMIT 1))
    LIMIT $6
)
SELECT c.id, sum(
    q.weight * f.tf * ($8::float8 + 1)
    / (f.tf + $8::float8 * (1 - $9::float8 + $9::float8 * c.bm25_length / $10::float8))
) AS score
FROM candidates c
CROSS JOIN LATERAL (
    SELECT u.lexeme, sum(CASE w WHEN 'A' THEN $11::float8 ELSE 1.0 END) AS tf
    FROM unnest(c.bm25_text) u, unnest(u.weights) w
    WHERE u.lexeme = ANY($2::text[])
    GROUP BY u.lexeme
) f
JOIN unnest($2::text[], $3::float8[]) AS q(lexeme, weight) ON q.lexeme = f.lexeme
GROUP BY c.id
ORDER BY score DESC, c.id
LIMIT $7
"""


class Bm25Scorer:
    """BM25F scores of problems against a query, best first."""

    def __init__(self, title_weight: float = TITLE_WEIGHT) -> None:
        self.title_weight = title_weight
        self._stats: tuple[float, int, float] | None = None  # (when read, count, mean length)

    async def _corpus(self, conn: Any) -> tuple[int, float]:
        now = time.monotonic()
        if self._stats is None or now - self._stats[0] > _STATS_TTL_S:
            row = await conn.fetchrow(_STATS)
            self._stats = (now, int(row["n"]), float(row["avgdl"]))
        return self._stats[1], self._stats[2]

    async def scores(
        self,
        conn: Any,
        text: str,
        limit: int,
        service: str | None = None,
        require_solutions: bool = False,
    ) -> dict[Any, float]:
        """Problem id -> BM25F score over the score the query would give itself as a
        document (0..1, 1 for a problem with the query's own words), for the best `limit`.
        Normalised so, it is comparable across queries: a query whose words no problem has
        scores low everywhere instead of ranking its least-bad match at 1."""
        rows = await conn.fetch(_TERMS, text)
        if not rows:
            return {}
        lexemes = [row["lexeme"] for row in rows]
        qtf = [float(row["qtf"]) for row in rows]
        quoted = [quote(lexeme) for lexeme in lexemes]
        n, avgdl = await self._corpus(conn)
        n = max(n, 1)
        dfs = await document_frequencies(conn, "bm25_text", lexemes, quoted, n, DF_CAP)
        # a word repeated in the query weighs more, saturated like a document's
        weights = [
            idf(min(float(df), n), n) * (tf * (K1 + 1) / (tf + K1))
            for df, tf in zip(dfs, qtf, strict=True)
        ]
        length = sum(qtf)
        own = sum(
            w * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / max(avgdl, 1.0)))
            for w, tf in zip(weights, qtf, strict=True)
        )
        chosen = rarest(dfs, quoted, CANDIDATE_BUDGET)
        if not chosen:
            return {}
        found = await conn.fetch(
            _SCORES,
            " | ".join(chosen),
            lexemes,
            weights,
            service,
            require_solutions,
            CANDIDATE_BUDGET,
            limit,
            K1,
            B,
            max(avgdl, 1.0),
            self.title_weight,
        )
        return {row["id"]: min(1.0, float(row["score"]) / own) for row in found}
