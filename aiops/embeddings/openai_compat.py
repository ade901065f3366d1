"""Embeddings from OpenAI or any server speaking its API (Ollama, TEI, vLLM), over httpx.

POST {base_url}/embeddings with {"model", "input": [...]} per batch. 429 and 5xx answers,
timeouts and refused connections are retried with exponential backoff (Retry-After is
honoured), because rate limits and restarting local servers are routine; anything else
fails at once with a message naming the URL.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
import numpy as np
from pydantic import BaseModel, SecretStr, ValidationError

from aiops.embeddings.base import (
    EmbeddingError,
    Vectors,
    chunked,
    empty_vectors,
    l2_normalise,
    valid_text,
)

DEFAULT_BATCH_SIZE = 256  # well under OpenAI's 2048 inputs per request
_MAX_DELAY = 30.0


class EmbeddingItem(BaseModel):
    index: int
    embedding: list[float]


class EmbeddingResponse(BaseModel):
    """The part of an OpenAI embeddings answer we rely on; other fields are ignored."""

    data: list[EmbeddingItem]


def _is_retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), _MAX_DELAY)
    except ValueError:
        return None  # absent, or an HTTP date: use our own backoff


class OpenAICompatEmbedder:
    """An Embedder backed by an OpenAI-compatible /embeddings endpoint.

    Batches are sent one after another: simpler on rate limits than parallel requests.
    Pass `client` to share a connection pool; otherwise each `embed` call opens its own,
    which keeps the embedder usable from any event loop.
    """

    def __init__(
        self,
        *,
        model: str,
        dim: int,
        base_url: str,
        api_key: SecretStr | str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
        dimensions: int | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.model = model
        self.dim = dim
        self.url = base_url.rstrip("/") + "/embeddings"
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        # Only text-embedding-3-* accept "dimensions"; other servers may reject the field.
        self.dimensions = dimensions
        self._api_key = api_key if isinstance(api_key, SecretStr | None) else SecretStr(api_key)
        self._client = client

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key is not None and self._api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        return headers

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            yield client

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return empty_vectors(self.dim)
        async with self._session() as client:
            parts = [
                await self._embed_batch(client, batch) for batch in chunked(texts, self.batch_size)
            ]
        return np.concatenate(parts)

    async def _embed_batch(self, client: httpx.AsyncClient, texts: Sequence[str]) -> Vectors:
        payload: dict[str, object] = {
            "model": self.model,
            "input": [valid_text(text) for text in texts],
        }
        if self.dimensions is not None:
            payload["dimensions"] = self.dimensions
        response = await self._post(client, payload)
        try:
            body = EmbeddingResponse.model_validate_json(response.content)
        except ValidationError as error:
            raise EmbeddingError(
                f"unexpected answer from the embedding server at {self.url}: "
                f"{error.errors()[0]['msg']} at {error.errors()[0]['loc']}"
            ) from None
        items = sorted(body.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(len(texts))):
            raise EmbeddingError(
                f"the embedding server at {self.url} returned {len(items)} vectors "
                f"for {len(texts)} texts"
            )
        for item in items:
            if len(item.embedding) != self.dim:
                raise EmbeddingError(
                    f"the embedding server at {self.url} returned {len(item.embedding)}-"
                    f"dimensional vectors for model {self.model!r}, expected {self.dim}: "
                    f"set AIOPS_EMBEDDING_DIM to the model's size or pick another model"
                )
        return l2_normalise(np.array([item.embedding for item in items], dtype=np.float32))

    async def _post(self, client: httpx.AsyncClient, payload: dict[str, object]) -> httpx.Response:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            delay = min(self.backoff * 2**attempt, _MAX_DELAY)
            try:
                response = await client.post(
                    self.url, json=payload, headers=self._headers(), timeout=self.timeout
                )
            except httpx.TransportError as error:
                if last:
                    raise EmbeddingError(
                        f"cannot reach the embedding server at {self.url} after {attempts} "
                        f"attempts ({type(error).__name__}: {error}); is it running, and is "
                        f"OPENAI_BASE_URL right?"
                    ) from None
            else:
                if response.is_success:
                    return response
                if not _is_retryable(response.status_code) or last:
                    raise self._http_error(response, attempt + 1)
                asked = _retry_after(response)
                delay = delay if asked is None else asked
            # Jitter so that many workers throttled together do not retry together.
            await asyncio.sleep(delay * random.uniform(1.0, 1.25))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _http_error(self, response: httpx.Response, attempts: int) -> EmbeddingError:
        status = response.status_code
        detail = response.text.strip().replace("\n", " ")[:300]
        if status in (401, 403):
            hint = "check OPENAI_API_KEY"
        elif _is_retryable(status):
            hint = f"still failing after {attempts} attempts"
        else:
            hint = f"model {self.model!r}"
        return EmbeddingError(
            f"the embedding server at {self.url} answered HTTP {status} ({hint}): {detail}"
        )
