"""Re-embedding every node with the configured model, including a change of dimension.

Two phases, so the graph stays searchable for nearly all of the run:

1. Embed every node's text in batches into a session-private staging table, without
   locking knowledge_nodes: incidents keep being recorded and searched meanwhile.
2. One transaction: lock the table against writes, embed the nodes added since phase 1,
   and, when the dimension changes, drop the indexes on the column, ALTER it to
   vector(new), copy the staged vectors in and rebuild the indexes from their own
   definitions. A failure anywhere rolls back to the old column, vectors and indexes.

The window vectors of long problems (knowledge_chunks) are recomputed beside their node's,
so a problem's windows always come from the same model as its own vector.

`aiops migrate` refuses to run against a column of another dimension and sends the user
here; after this, it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg
from pydantic import BaseModel

from aiops.db.migrate import current_embedding_dim
from aiops.db.pool import create_pool
from aiops.embeddings.base import Embedder, EmbeddingError
from aiops.knowledge.errors import KnowledgeError
from aiops.knowledge.texts import EMBEDDED_TYPES, node_text, problem_chunks

# pgvector indexes (HNSW, IVFFlat) on the vector type accept at most 2,000 dimensions
MAX_INDEXED_DIM = 2000
DEFAULT_BATCH = 256
# pg_advisory_lock key: one re-embedding at a time
_LOCK_KEY = 0x0A1096

Progress = Callable[[int, int], None]


class ReembedReport(BaseModel):
    model: str
    old_dim: int
    new_dim: int
    dim_changed: bool
    nodes: int
    embedded: int
    caught_up: int
    seconds: float
    per_second: float
    indexes_rebuilt: list[str]


async def _embedding_indexes(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of every index that uses knowledge_nodes.embedding."""
    rows = await conn.fetch(
        """
        SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attname = 'embedding'
        WHERE i.indrelid = 'knowledge_nodes'::regclass
          AND (a.attnum = ANY(i.indkey)
               OR pg_get_expr(i.indexprs, i.indrelid) LIKE '%embedding%'
               OR pg_get_expr(i.indpred, i.indrelid) LIKE '%embedding%')
        ORDER BY c.relname
        """
    )
    return [(row["name"], row["definition"]) for row in rows]


async def _embed_rows(
    embedder: Embedder, rows: list[Any]
) -> tuple[list[tuple[Any, Any]], list[tuple[Any, int, Any]]]:
    """(node id, vector) per node and (node id, ord, vector) per window of a long problem."""
    texts: list[str] = []
    ids: list[Any] = []
    windows: list[tuple[Any, int]] = []
    window_texts: list[str] = []
    for row in rows:
        text = node_text(row["t"], row["data"])
        if text:
            ids.append(row["id"])
            texts.append(text)
        if row["t"] == "problem":
            data = row["data"]
            extra = problem_chunks(str(data.get("description") or ""), data.get("title"))
            windows += [(row["id"], i) for i in range(1, len(extra) + 1)]
            window_texts += extra
    if not texts:
        return [], []
    vectors = await embedder.embed(texts + window_texts)
    if vectors.shape != (len(texts) + len(window_texts), embedder.dim):
        raise EmbeddingError(
            f"{embedder.model} returned vectors of shape {vectors.shape} for {len(texts)} texts;"
            f" the settings say {embedder.dim} dimensions (AIOPS_EMBEDDING_DIM)"
        )
    nodes = list(zip(ids, vectors[: len(texts)], strict=True))
    chunks = [
        (node, ord_, vector)
        for (node, ord_), vector in zip(windows, vectors[len(texts) :], strict=True)
    ]
    return nodes, chunks


_CHUNK_COLUMNS = ["node_id", "ord", "embedding"]


_SELECT = """
    SELECT id, node_type::text AS t, data FROM knowledge_nodes
    WHERE (node_type::text = ANY($1::text[]) OR embedding IS NOT NULL)
      AND (NOT $2 OR embedding IS NULL)
"""


async def reembed(
    database_url: str,
    embedder: Embedder,
    *,
    batch_size: int = DEFAULT_BATCH,
    missing_only: bool = False,
    progress: Progress | None = None,
) -> ReembedReport:
    """Recompute embeddings with `embedder` (every node's, or with `missing_only` those
    without one), changing the column to the embedder's dimension if it differs."""
    started = time.perf_counter()
    # one session for the whole run: the staging table and the advisory lock live in it
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await _run(conn, embedder, batch_size, missing_only, progress, started)
    finally:
        await pool.close()  # the session ends: staging table dropped, advisory lock released


async def _run(
    conn: Any,
    embedder: Embedder,
    batch_size: int,
    missing_only: bool,
    progress: Progress | None,
    started: float,
) -> ReembedReport:
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            raise KnowledgeError("another `aiops kg reembed` is running on this database")
        old_dim = await current_embedding_dim(conn)
        if old_dim is None:
            raise KnowledgeError("knowledge_nodes does not exist yet: run `aiops migrate` first")
        new_dim = embedder.dim
        dim_changed = old_dim != new_dim
        if dim_changed and missing_only:
            raise KnowledgeError(
                f"the column is vector({old_dim}) and {embedder.model} gives {new_dim}"
                " dimensions: every vector must be recomputed, run without --missing-only"
            )
        if new_dim > MAX_INDEXED_DIM:
            raise KnowledgeError(
                f"{embedder.model} gives {new_dim} dimensions; pgvector indexes take at most "
                f"{MAX_INDEXED_DIM}: set AIOPS_EMBEDDING_DIM to {MAX_INDEXED_DIM} or less "
                "(text-embedding-3 models shorten their vectors on request)"
            )
        await conn.execute(
            "CREATE TEMP TABLE reembed_staging (id uuid PRIMARY KEY, embedding vector NOT NULL)"
        )
        await conn.execute(
            "CREATE TEMP TABLE reembed_chunks"
            " (node_id uuid, ord integer, embedding vector NOT NULL, PRIMARY KEY (node_id, ord))"
        )
        types = list(EMBEDDED_TYPES)
        total = await conn.fetchval(f"SELECT count(*) FROM ({_SELECT}) s", types, missing_only)
        done = 0
        last: Any = None
        if progress:
            progress(0, total)
        # phase 1: no lock on knowledge_nodes; keyset pagination so each batch is one index
        # range scan however far the run has got
        while True:
            rows = await conn.fetch(
                _SELECT + " AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4",
                types,
                missing_only,
                last,
                batch_size,
            )
            if not rows:
                break
            last = rows[-1]["id"]
            staged, staged_chunks = await _embed_rows(embedder, list(rows))
            await conn.copy_records_to_table(
                "reembed_staging", records=staged, columns=["id", "embedding"]
            )
            await conn.copy_records_to_table(
                "reembed_chunks", records=staged_chunks, columns=_CHUNK_COLUMNS
            )
            done += len(rows)
            if progress:
                progress(done, max(total, done))
        # phase 2: one transaction
        rebuilt: list[str] = []
        async with conn.transaction():
            await conn.execute("LOCK TABLE knowledge_nodes IN SHARE ROW EXCLUSIVE MODE")
            late = await conn.fetch(
                _SELECT + " AND NOT EXISTS (SELECT 1 FROM reembed_staging s"
                " WHERE s.id = knowledge_nodes.id)",
                types,
                missing_only,
            )
            caught_up, late_chunks = await _embed_rows(embedder, list(late))
            if caught_up:
                await conn.copy_records_to_table(
                    "reembed_staging", records=caught_up, columns=["id", "embedding"]
                )
                await conn.copy_records_to_table(
                    "reembed_chunks", records=late_chunks, columns=_CHUNK_COLUMNS
                )
            chunk_indexes = [
                (r["indexname"], r["indexdef"])
                for r in await conn.fetch(
                    "SELECT indexname, indexdef FROM pg_indexes"
                    " WHERE tablename = 'knowledge_chunks' AND indexdef LIKE '%hnsw%'"
                )
            ]
            await conn.execute(
                "DELETE FROM knowledge_chunks c WHERE $1"
                " OR EXISTS (SELECT 1 FROM reembed_staging s WHERE s.id = c.node_id)",
                dim_changed,
            )
            if dim_changed:
                indexes = await _embedding_indexes(conn)
                for name, _ in indexes:
                    await conn.execute(f'DROP INDEX "{name}"')
                await conn.execute(
                    f"ALTER TABLE knowledge_nodes ALTER COLUMN embedding"
                    f" TYPE vector({new_dim}) USING NULL"
                )
                for name, _ in chunk_indexes:
                    await conn.execute(f'DROP INDEX "{name}"')
                await conn.execute(
                    f"ALTER TABLE knowledge_chunks ALTER COLUMN embedding TYPE vector({new_dim})"
                )
            embedded = await conn.execute(
                f"UPDATE knowledge_nodes n SET embedding = s.embedding::vector({new_dim})"
                " FROM reembed_staging s WHERE n.id = s.id"
            )
            await conn.execute(
                "INSERT INTO knowledge_chunks (node_id, ord, embedding)"
                f" SELECT c.node_id, c.ord, c.embedding::vector({new_dim}) FROM reembed_chunks c"
                " JOIN knowledge_nodes n ON n.id = c.node_id"
            )
            if dim_changed:
                # the HNSW build is the long part; give it memory so the graph is built in RAM
                await conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
                for name, definition in indexes + chunk_indexes:
                    await conn.execute(definition)
                    rebuilt.append(name)
        seconds = time.perf_counter() - started
        count = int(embedded.split()[-1])
        return ReembedReport(
            model=embedder.model,
            old_dim=old_dim,
            new_dim=new_dim,
            dim_changed=dim_changed,
            nodes=done + len(late),
            embedded=count,
            caught_up=len(caught_up),
            seconds=round(seconds, 3),
            per_second=round(count / seconds, 1) if seconds > 0 else 0.0,
            indexes_rebuilt=rebuilt,
        )
    finally:
        await conn.execute("DROP TABLE IF EXISTS reembed_staging")
        await conn.execute("DROP TABLE IF EXISTS reembed_chunks")
        await conn.execute("SELECT pg_advisory_unlock_all()")
