"""What the graph holds, and whether its embeddings still fit the configured model.

`verify_embeddings` finds what breaks search quietly: nodes stored without a vector, a
column whose dimension is not the model's (after a model change), and, by re-embedding a
sample, vectors of the right size that another model (or another text) produced.
"""

from __future__ import annotations

from typing import Any, cast

import asyncpg
import numpy as np
from pydantic import BaseModel, Field

from aiops.db.migrate import current_embedding_dim
from aiops.embeddings.base import Embedder
from aiops.knowledge.texts import EMBEDDED_TYPES, node_text

# A re-embedded sample this close to the stored vector is the same model and text; the
# local model reproduces itself to ~1e-6, API models to ~1e-3.
SAME_VECTOR_COSINE = 0.99
_SHOWN = 20


class EmbeddingCoverage(BaseModel):
    nodes: int
    embedded: int
    coverage: float = Field(description="embedded / nodes, 1.0 for an empty type")


class GraphStats(BaseModel):
    nodes: dict[str, int] = Field(description="nodes per type")
    edges: dict[str, int] = Field(description="edges per relationship")
    total_nodes: int
    total_edges: int
    embeddings: dict[str, EmbeddingCoverage] = Field(
        description="per embedded type (problem, solution, pattern)"
    )
    embedding_dim: int | None = Field(description="the dimension of the embedding column")


class EmbeddingReport(BaseModel):
    model: str
    configured_dim: int
    column_dim: int | None
    dim_matches: bool
    missing: int = Field(description="nodes of an embedded type without a vector")
    missing_ids: list[str] = Field(default_factory=list, description="the first few")
    wrong_dim: int = Field(description="vectors whose length is not the configured dimension")
    sampled: int = 0
    drifted: int = Field(default=0, description="sampled vectors the model no longer reproduces")
    drifted_ids: list[str] = Field(default_factory=list)
    min_cosine: float | None = None
    ok: bool
    advice: str = ""


def as_array(value: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A stored vector as numpy, whichever form the pgvector codec decodes it to."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


async def graph_stats(pool: asyncpg.Pool) -> GraphStats:
    async with pool.acquire() as conn:
        node_rows = await conn.fetch(
            "SELECT node_type::text AS t, count(*) AS n, count(embedding) AS e"
            " FROM knowledge_nodes GROUP BY 1"
        )
        edge_rows = await conn.fetch(
            "SELECT relationship::text AS r, count(*) AS n FROM knowledge_edges GROUP BY 1"
        )
        dim = await current_embedding_dim(cast(asyncpg.Connection, conn))
    nodes = {row["t"]: int(row["n"]) for row in node_rows}
    embedded = {row["t"]: int(row["e"]) for row in node_rows}
    coverage = {
        t: EmbeddingCoverage(
            nodes=nodes.get(t, 0),
            embedded=embedded.get(t, 0),
            coverage=round(embedded.get(t, 0) / nodes[t], 4) if nodes.get(t) else 1.0,
        )
        for t in EMBEDDED_TYPES
    }
    edges = {row["r"]: int(row["n"]) for row in edge_rows}
    return GraphStats(
        nodes=dict(sorted(nodes.items())),
        edges=dict(sorted(edges.items())),
        total_nodes=sum(nodes.values()),
        total_edges=sum(edges.values()),
        embeddings=coverage,
        embedding_dim=dim if dim and dim > 0 else None,
    )


async def verify_embeddings(
    pool: asyncpg.Pool, embedder: Embedder, sample: int = 0
) -> EmbeddingReport:
    """Missing vectors, dimension mismatches and, with `sample` > 0, that many stored vectors
    re-computed with the configured model and compared (cosine >= 0.99 counts as the same)."""
    types = list(EMBEDDED_TYPES)
    async with pool.acquire() as conn:
        column_dim = await current_embedding_dim(cast(asyncpg.Connection, conn))
        missing_rows = await conn.fetch(
            "SELECT id FROM knowledge_nodes WHERE embedding IS NULL"
            " AND node_type::text = ANY($1::text[]) ORDER BY created_at LIMIT $2",
            types,
            _SHOWN,
        )
        missing = await conn.fetchval(
            "SELECT count(*) FROM knowledge_nodes WHERE embedding IS NULL"
            " AND node_type::text = ANY($1::text[])",
            types,
        )
        wrong_dim = await conn.fetchval(
            "SELECT count(*) FROM knowledge_nodes"
            " WHERE embedding IS NOT NULL AND vector_dims(embedding) <> $1",
            embedder.dim,
        )
        rows = (
            await conn.fetch(
                "SELECT id, node_type::text AS t, data, embedding FROM knowledge_nodes"
                " WHERE embedding IS NOT NULL AND node_type::text = ANY($1::text[])"
                " ORDER BY random() LIMIT $2",
                types,
                sample,
            )
            if sample > 0
            else []
        )
    drifted: list[str] = []
    min_cosine: float | None = None
    pairs: list[tuple[Any, str]] = []
    for row in rows:
        text = node_text(row["t"], row["data"])
        if text:
            pairs.append((row, text))
    if pairs:
        fresh = await embedder.embed([text for _, text in pairs])
        for (row, _), vector in zip(pairs, fresh, strict=True):
            stored = as_array(row["embedding"])
            if stored.shape != vector.shape:
                cosine = 0.0
            else:
                norm = float(np.linalg.norm(stored) * np.linalg.norm(vector)) or 1.0
                cosine = float(np.dot(stored, vector)) / norm
            min_cosine = cosine if min_cosine is None else min(min_cosine, cosine)
            if cosine < SAME_VECTOR_COSINE:
                drifted.append(str(row["id"]))
    dim_matches = column_dim == embedder.dim
    ok = dim_matches and not missing and not wrong_dim and not drifted
    advice = ""
    if not ok:
        advice = (
            "run `aiops kg reembed` to recompute every embedding with the configured model"
            if not dim_matches or wrong_dim or drifted
            else "run `aiops kg reembed --missing-only` to embed the nodes without a vector"
        )
    return EmbeddingReport(
        model=embedder.model,
        configured_dim=embedder.dim,
        column_dim=column_dim,
        dim_matches=dim_matches,
        missing=int(missing),
        missing_ids=[str(row["id"]) for row in missing_rows],
        wrong_dim=int(wrong_dim),
        sampled=len(pairs),
        drifted=len(drifted),
        drifted_ids=drifted[:_SHOWN],
        min_cosine=None if min_cosine is None else round(min_cosine, 6),
        ok=ok,
        advice=advice,
    )
