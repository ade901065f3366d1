"""Changing the embedding model end to end: `aiops migrate` refuses the new dimension and
names `aiops kg reembed`, which changes the column, recomputes every vector and rebuilds
the HNSW index; then migrate runs and search works. Two real embedders: all-MiniLM-L6-v2
(384) and the OpenAI-compatible client against a local HTTP server (64)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from test_embeddings import FakeOpenAI, expected_vectors, fake_server  # noqa: F401
from typer.testing import CliRunner, Result

from aiops.config import get_settings
from aiops.db.migrate import MigrationError
from aiops.db.pool import create_pool
from aiops.embeddings import MiniLMEmbedder, OpenAICompatEmbedder
from aiops.embeddings.base import Vectors
from aiops.knowledge import KnowledgeGraph, ProblemIn
from aiops.knowledge.reembed import reembed
from aiops.knowledge.texts import node_text
from workers import cli

SEED = Path(__file__).resolve().parents[1] / "examples" / "knowledge" / "seed.jsonl"
FAKE_DIM = 64

cli._register()


def aiops(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli.app, list(args), input=stdin)


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in ("AIOPS_EMBEDDING_PROVIDER", "AIOPS_EMBEDDING_MODEL", "AIOPS_EMBEDDING_DIM"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def use_fake(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI) -> None:
    fake.reset()
    fake.dim = FAKE_DIM
    monkeypatch.setenv("AIOPS_EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("AIOPS_EMBEDDING_MODEL", "fake-embed")
    monkeypatch.setenv("AIOPS_EMBEDDING_DIM", str(FAKE_DIM))
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    get_settings.cache_clear()


def use_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIOPS_EMBEDDING_PROVIDER", "AIOPS_EMBEDDING_MODEL", "AIOPS_EMBEDDING_DIM"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


async def _state(url: str) -> tuple[str, list[str], list[tuple[str, str, Any, Any]]]:
    conn = await asyncpg.connect(url)
    try:
        column = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'knowledge_nodes'::regclass AND attname = 'embedding'"
        )
        indexes = [
            r["indexdef"]
            for r in await conn.fetch(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'knowledge_nodes'"
                " AND indexdef LIKE '%embedding%'"
            )
        ]
        rows = await conn.fetch(
            "SELECT id::text, node_type::text, data::text, embedding::text FROM knowledge_nodes"
            " WHERE node_type IN ('problem', 'solution') ORDER BY id"
        )
    finally:
        await conn.close()
    nodes = [
        (
            r["id"],
            r["node_type"],
            json.loads(r["data"]),
            r["embedding"] and json.loads(r["embedding"]),
        )
        for r in rows
    ]
    return column, indexes, nodes


def state(url: str) -> tuple[str, list[str], list[tuple[str, str, Any, Any]]]:
    return asyncio.run(_state(url))


def test_switching_models_end_to_end(
    env: pytest.MonkeyPatch,
    database_url: str,
    fake_server: FakeOpenAI,  # noqa: F811
) -> None:
    lines = SEED.read_text().splitlines()[:4]
    assert aiops("kg", "import", "-", stdin="\n".join(lines)).exit_code == 0
    column, indexes, before = state(database_url)
    assert column == "vector(384)" and any("hnsw" in i for i in indexes)

    use_fake(env, fake_server)
    refused = aiops("migrate")
    assert isinstance(refused.exception, MigrationError)
    assert "aiops kg reembed" in str(refused.exception)
    assert aiops("kg", "verify", "--sample", "0").exit_code == 1

    done = aiops("kg", "reembed", "--batch-size", "3")
    assert done.exit_code == 0, done.output
    assert "vector(384) -> vector(64)" in done.output
    assert f"re-embedded {len(before)} node(s) with fake-embed" in done.output
    assert "embedded 12/12 nodes" in done.output  # progress (at most once a second)

    column, after_indexes, after = state(database_url)
    assert column == f"vector({FAKE_DIM})"
    assert [i.replace("knowledge_nodes", "") for i in after_indexes] == [
        i.replace("knowledge_nodes", "") for i in indexes
    ]  # the same index definitions, rebuilt on the new column
    assert [n[:3] for n in after] == [n[:3] for n in before]  # only the vectors changed
    texts = [node_text(node_type, data) or "" for _, node_type, data, _ in after]
    np.testing.assert_allclose(
        np.array([n[3] for n in after]), expected_vectors(texts, FAKE_DIM), atol=1e-6
    )

    migrated = aiops("migrate")
    assert migrated.exit_code == 0, migrated.output
    assert f"vector({FAKE_DIM})" in migrated.output
    verified = aiops("kg", "verify", "--sample", "5")
    assert verified.exit_code == 0, verified.output
    assert "embeddings ok" in verified.output
    problem = json.loads(lines[2])
    hits = json.loads(aiops("kg", "search", problem["description"], "--json").stdout)
    assert hits[0]["problem"]["key"] == problem["key"]
    assert hits[0]["semantic"] < 1.0 and hits[0]["lexical"] == 1.0  # text differs: no extras

    # and back to the local model
    use_minilm(env)
    back = aiops("kg", "reembed")
    assert back.exit_code == 0, back.output
    assert "vector(64) -> vector(384)" in back.output
    column, _, restored = state(database_url)
    assert column == "vector(384)"
    np.testing.assert_allclose(
        np.array([n[3] for n in restored]), np.array([n[3] for n in before]), atol=1e-5
    )
    assert aiops("migrate").exit_code == 0


async def test_a_failed_reembed_leaves_the_old_vectors(
    database_url: str,
    fake_server: FakeOpenAI,  # noqa: F811
) -> None:
    pool = await create_pool(database_url)
    try:
        kg = KnowledgeGraph(pool, MiniLMEmbedder())
        for name in ("alpha", "beta", "gamma", "delta", "epsilon"):
            await kg.add_problem(ProblemIn(description=f"worker {name} crashed on start"))
    finally:
        await pool.close()
    before = await _state(database_url)
    fake_server.reset()
    fake_server.dim = FAKE_DIM
    fake_server.script[:] = [200, 500, 500, 500, 500]  # the second batch keeps failing
    embedder = OpenAICompatEmbedder(
        model="fake-embed", dim=FAKE_DIM, base_url=fake_server.url, max_retries=2, backoff=0.01
    )
    with pytest.raises(Exception, match="500"):
        await reembed(database_url, embedder, batch_size=2)
    assert await _state(database_url) == before


class _HeldAfterFirstBatch:
    """The new model, holding phase 1 after its first batch until the late node is written,
    so the node lands during the run whatever the machine's load (it raced the column swap
    under load and met the new dimension)."""

    def __init__(self, inner: OpenAICompatEmbedder) -> None:
        self.inner = inner
        self.model = inner.model
        self.dim = inner.dim
        self.first_batch = asyncio.Event()
        self.late_written = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = await self.inner.embed(texts)
        if self.first_batch.is_set():
            await self.late_written.wait()
        self.first_batch.set()
        return vectors


async def test_nodes_added_during_a_reembed_get_new_vectors(
    database_url: str,
    fake_server: FakeOpenAI,  # noqa: F811
) -> None:
    pool = await create_pool(database_url)
    kg = KnowledgeGraph(pool, MiniLMEmbedder())
    try:
        for name in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"):
            await kg.add_problem(ProblemIn(description=f"queue {name} backlog keeps growing"))
        fake_server.reset()
        fake_server.dim = FAKE_DIM
        embedder = _HeldAfterFirstBatch(
            OpenAICompatEmbedder(model="fake-embed", dim=FAKE_DIM, base_url=fake_server.url)
        )

        async def add_late() -> str:
            await embedder.first_batch.wait()
            # the old model and the old column: what a worker not yet restarted writes
            record = await kg.add_problem(ProblemIn(description="late arrival: disk full"))
            embedder.late_written.set()
            return record.id

        late_id, report = await asyncio.gather(
            add_late(), reembed(database_url, embedder, batch_size=1)
        )
    finally:
        await pool.close()
    assert report.dim_changed and report.embedded == 7
    _, _, nodes = await _state(database_url)
    late = next(n for n in nodes if n[0] == late_id)
    np.testing.assert_allclose(
        np.array(late[3]),
        expected_vectors([node_text("problem", late[2]) or ""], FAKE_DIM)[0],
        atol=1e-6,
    )
