"""The lexical half of search: PostgreSQL full text, weighted by how rare each word is.

A plain `ts_rank_cd` ranks by how many query words a problem shares, whichever they are:
"the service fails" matches everything a little, and normalised to the best match it drowns
the embedding. Here each query term weighs its inverse document frequency among problems
(BM25's IDF), and a problem scores the share of the query's total weight that it matches,
0..1. One rare identifier (ENOSPC, 40P01, blk_-6952...) matched outweighs any number of
common words, and a query of common words alone scores low everywhere, so the fusion leans
on the embedding exactly when the words carry little.

Terms: the English stems of the query (so "timeouts" matches "timeout"), plus the words the
English configuration drops or splits but the `simple` one keeps whole: identifiers with
digits, dots or underscores, and the particles and negations English treats as stop words
yet an operations report turns on ("no space", "not valid", "marked down", "piles up").

Document frequencies of common words come from the planner's statistics of the column
(pg_stats most_common_elems, kept by ANALYZE); the other words are counted through the GIN
index, capped at `DF_CAP` (past it a word is common: counting on would cost a heap visit
per match for a weight that barely changes).
"""

from __future__ import annotations

import math
import time
from typing import Any

DF_CAP = 1000
CANDIDATE_BUDGET = 300
_PROBLEM_COUNT_TTL_S = 30.0

_TERMS = """
SELECT DISTINCT lexeme FROM (
    SELECT lexeme FROM unnest(to_tsvector('english', $1))
    UNION ALL
    SELECT lexeme FROM unnest(to_tsvector('simple', $1))
    WHERE lexeme ~ '[0-9_.]' OR to_tsvector('english', lexeme) = ''::tsvector
) t
"""

# Terms travel as tsquery literals of one quoted lexeme each ('enospc'): already normalised,
# so they match the stored vectors as they are, whichever configuration produced them.


def _df_sql(column: str) -> str:
    # exact below the cap, through the GIN index; a scan stops at the cap
    return f"""
SELECT t.i, (
    SELECT count(*) FROM (
        SELECT 1 FROM knowledge_nodes n
        WHERE n.node_type = 'problem' AND n.{column} @@ t.q::tsquery
        LIMIT $2
    ) hits
) AS df
FROM unnest($1::text[]) WITH ORDINALITY AS t(q, i)
"""


def _common_sql(column: str) -> str:
    return f"""
SELECT e.elem, e.freq FROM pg_stats s,
    unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(elem, freq)
WHERE s.schemaname = current_schema() AND s.tablename = 'knowledge_nodes'
  AND s.attname = '{column}' AND e.elem = ANY($1::text[])
"""


# the two tsvector columns a document frequency is counted in (a fixed set: no input
# reaches these statements' text)
_FREQUENCY_SQL = {
    column: (_common_sql(column), _df_sql(column)) for column in ("search_text", "bm25_text")
}


async def document_frequencies(
    conn: Any, column: str, lexemes: list[str], quoted: list[str], n: int, cap: int
) -> list[int]:
    """How many problems hold each lexeme in `column`: common words from the planner's
    statistics, without counting their matches; the others counted through the GIN index,
    capped (past the cap a word is common)."""
    common_sql, df_sql = _FREQUENCY_SQL[column]
    common = {r["elem"]: float(r["freq"]) * n for r in await conn.fetch(common_sql, lexemes)}
    dfs = [int(common.get(lexeme, 0.0)) for lexeme in lexemes]
    to_count = [i for i, df in enumerate(dfs) if df < cap]
    if to_count:
        for row in await conn.fetch(df_sql, [quoted[i] for i in to_count], cap):
            dfs[to_count[row["i"] - 1]] = int(row["df"])
    return dfs


def rarest(dfs: list[int], quoted: list[str], budget: int) -> list[str]:
    """The rarest terms that match anything, until their matches fill the budget."""
    chosen: list[str] = []
    filled = 0
    for df, q in sorted(zip(dfs, quoted, strict=True)):
        if df == 0:
            continue
        chosen.append(q)
        filled += df
        if filled >= budget:
            break
    return chosen


# Candidates: the problems matching the rarest terms, as many as CANDIDATE_BUDGET allows,
# each scored by the IDF of every query term it matches. No ranking function: checking a
# few hundred short vectors for each term costs less than ts_rank_cd over every match.
_MATCHES = """
WITH candidates AS (
    SELECT id, search_text FROM knowledge_nodes
    WHERE node_type = 'problem' AND search_text @@ $1::tsquery
      AND ($4::text IS NULL OR data->'context'->>'service' = $4)
      AND (NOT $5 OR (SELECT true FROM knowledge_edges e
           WHERE e.to_node = knowledge_nodes.id AND e.relationship = 'solves' LIMIT 1))
    LIMIT $6
)
SELECT c.id, sum(t.weight) AS score
FROM candidates c
JOIN unnest($2::text[], $3::float8[]) AS t(q, weight) ON c.search_text @@ t.q::tsquery
GROUP BY c.id
ORDER BY score DESC, c.id
LIMIT $7
"""


def idf(df: float, n: float) -> float:
    """BM25's inverse document frequency, always positive."""
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


class LexicalScorer:
    """Scores problems against a query by the IDF share of its terms they match."""

    def __init__(self) -> None:
        self._problems: tuple[float, int] | None = None  # (when counted, how many)

    async def _problem_count(self, conn: Any) -> int:
        now = time.monotonic()
        if self._problems is None or now - self._problems[0] > _PROBLEM_COUNT_TTL_S:
            count = await conn.fetchval(
                "SELECT count(*) FROM knowledge_nodes WHERE node_type = 'problem'"
            )
            self._problems = (now, int(count))
        return self._problems[1]

    async def scores(
        self,
        conn: Any,
        text: str,
        limit: int,
        service: str | None = None,
        require_solutions: bool = False,
    ) -> dict[Any, float]:
        """Problem id -> share of the query's IDF weight it matches, for the best `limit`."""
        lexemes = [row["lexeme"] for row in await conn.fetch(_TERMS, text)]
        if not lexemes:
            return {}
        quoted = [quote(lexeme) for lexeme in lexemes]
        n = max(await self._problem_count(conn), 1)
        dfs = await document_frequencies(conn, "search_text", lexemes, quoted, n, DF_CAP)
        weights = [idf(min(float(df), n), n) for df in dfs]
        total = sum(weights)
        chosen = rarest(dfs, quoted, CANDIDATE_BUDGET)
        if not chosen:
            return {}
        rows = await conn.fetch(
            _MATCHES,
            " | ".join(chosen),
            quoted,
            weights,
            service,
            require_solutions,
            max(CANDIDATE_BUDGET, DF_CAP),
            limit,
        )
        return {row["id"]: float(row["score"]) / total for row in rows}


def quote(lexeme: str) -> str:
    """One lexeme as a tsquery literal, taken as is (no parsing, no stemming)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"
