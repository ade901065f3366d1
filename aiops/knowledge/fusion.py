"""How search combines its three signals into one order and one relevance.

- semantic: embedding cosine, the best of the query's windows against the problem's;
  carries paraphrases.
- lexical: the share of the query's IDF weight a problem matches (lexical.py); carries a
  rare identifier in a short query.
- bm25: BM25F over the query's own score (bm25.py); carries long reports, where how often
  the shared words come back and in which field is what separates a duplicate.

The relevance a hit reports (`similarity`, which diagnosis compares with its thresholds) is
the weighted sum of the three, 0..1, and it orders a short query. A long query (`long_words`
words or more) is ordered by a weighted reciprocal rank fusion (Cormack et al., SIGIR 2009)
of semantic and BM25: ranks are robust to how differently the signals spread their scores
from one corpus to the next, which a weighted sum of raw scores is not. Search computes
BM25 and looks through problems' windows only for a query the fusion weighs them for.
The weights are learned by bench/duplicates.py (cross-validated on the dev sets, the
held-out figure printed beside the in-sample one); nothing here is tuned by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

Mode = Literal["hybrid", "semantic", "lexical", "bm25"]


@dataclass(frozen=True, slots=True)
class Signals:
    id: Any
    semantic: float
    lexical: float
    bm25: float


class Fusion(BaseModel):
    semantic: float = Field(ge=0)
    lexical: float = Field(ge=0)
    bm25: float = Field(ge=0)
    rank_k: float | None = Field(
        default=None, gt=0, description="order by weighted reciprocal rank with this k"
    )
    rank_semantic: float = Field(default=0.5, ge=0, description="RRF weight of semantic")
    rank_bm25: float = Field(default=0.5, ge=0, description="RRF weight of bm25")
    long_words: float | None = Field(
        default=None,
        gt=0,
        description="a query of this many words or more is ordered by rank fusion; a shorter"
        " one by the weighted score alone (None: every query by rank fusion)",
    )

    def score(self, s: Signals) -> float:
        total = self.semantic + self.lexical + self.bm25 or 1.0
        return (self.semantic * s.semantic + self.lexical * s.lexical + self.bm25 * s.bm25) / total

    def ranked(self, query_words: int) -> bool:
        """Whether a query of this length is ordered by rank fusion (else by the score).

        A step, not a blend: a short query is ordered exactly as the score orders it, so
        what the short sets chose for paraphrases and log lines holds whatever the long
        path learns."""
        if self.rank_k is None:
            return False
        return self.long_words is None or query_words >= self.long_words

    def needs_bm25(self, query_words: int) -> bool:
        """Whether BM25 counts for this query: in the score, or in its rank fusion."""
        return self.bm25 > 0 or (self.ranked(query_words) and self.rank_bm25 > 0)

    def needs_windows(self, query_words: int) -> bool:
        """Whether search looks for the problems whose extra windows are nearest the
        query's (the long-query path): a long report's duplicate may share only a window
        deep in it. A problem's windows still count in the semantic score of every
        candidate; what a short query skips is the kNN over all windows."""
        return self.ranked(query_words)

    def explain(self, s: Signals, query_words: int = 0) -> str:
        order = (
            f"; ordered by reciprocal rank fusion of semantic and BM25 (k={self.rank_k:g},"
            f" {self.rank_semantic:g}/{self.rank_bm25:g}), a query of {query_words} words"
            if self.ranked(query_words)
            else ""
        )
        return (
            f"{self.semantic:g} x embedding cosine {s.semantic:.2f} + {self.lexical:g} x "
            f"{s.lexical:.2f} of the query's word weight matched + {self.bm25:g} x BM25 "
            f"{s.bm25:.2f} of the query's own{order}"
        )


# What bench/duplicates.py picks (5-fold cross-validated over SeaMonkey duplicate pairs, one
# configuration for the three dev sets, no short set's top-1 traded; the same pick in 4 of
# the 5 folds): the short sets' score for a query under 50 words, rank fusion from 50 on.
# SeaMonkey duplicates R@5 0.787 -> 0.853 held-out (0.867 in-sample); paraphrases and
# Loghub lines exactly as with the score alone.
FUSION = Fusion(
    semantic=0.65,
    lexical=0.35,
    bm25=0.0,
    rank_k=20.0,
    rank_semantic=0.7,
    rank_bm25=0.3,
    long_words=50,
)


def _ranks(signals: list[Signals], value: str) -> dict[Any, int]:
    """1-based rank of each candidate by one signal; candidates without it get none."""
    ordered = sorted(
        (s for s in signals if getattr(s, value) > 0),
        key=lambda s: (-getattr(s, value), str(s.id)),
    )
    return {s.id: i for i, s in enumerate(ordered, start=1)}


def fuse(
    signals: list[Signals], fusion: Fusion, mode: Mode = "hybrid", query_words: int = 0
) -> list[tuple[Signals, float]]:
    """Candidates with their relevance, best first (ties in a stable order).

    A short query is ordered by the weighted score, a long one (fusion.long_words) by the
    reciprocal rank fusion (ties by the score): paraphrases and single log lines share few
    words, which make rank lists of noise that a calibrated score keeps small; long
    reports share many words, and ranks weigh BM25 as it deserves. The relevance reported
    is the score either way."""
    if mode != "hybrid":
        scored = [(s, float(getattr(s, mode))) for s in signals]
        return sorted(scored, key=lambda item: (-item[1], str(item[0].id)))
    relevance = {s.id: fusion.score(s) for s in signals}
    if fusion.rank_k is None or not fusion.ranked(query_words):
        return sorted(
            ((s, relevance[s.id]) for s in signals), key=lambda item: (-item[1], str(item[0].id))
        )
    k = fusion.rank_k
    weights = {"semantic": fusion.rank_semantic, "bm25": fusion.rank_bm25}
    ranks = {name: _ranks(signals, name) for name, weight in weights.items() if weight > 0}

    def order(s: Signals) -> float:
        return sum(weights[name] / (k + by[s.id]) for name, by in ranks.items() if s.id in by)

    return sorted(
        ((s, relevance[s.id]) for s in signals),
        key=lambda item: (-order(item[0]), -item[1], str(item[0].id)),
    )
