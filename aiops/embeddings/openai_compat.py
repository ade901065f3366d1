"""Embeddings from OpenAI or any server speaking its API (Ollama, TEI, vLLM), through the
official `openai` client.

One `embeddings.create` per batch, floats asked for explicitly (the client would ask for
base64, which older servers do not speak). 429 and 5xx answers, timeouts and refused
connections are retried here rather than by the client, with our own exponential backoff
(Retry-After is honoured), because rate limits and restarting local servers are routine and
the backoff is a setting; anything else fails at once with a message naming the URL. The
answer is parsed by our own model, so an unexpected body is a clear error, not a crash.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import openai
from openai import AsyncOpenAI
from pydantic import BaseModel, SecretStr, ValidationError

if TYPE_CHECKING:
    import httpx2  # the openai client's HTTP library; its responses are what we read

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


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), _MAX_DELAY)
    except ValueError:
        return None  # absent, or an HTTP date: use our own backoff


# the client insists on a key; with none we send this and omit the header per request
_NO_KEY = "no-key"


class OpenAICompatEmbedder:
    """An Embedder backed by an OpenAI-compatible /embeddings endpoint.

    Batches are sent one after another: simpler on rate limits than parallel requests.
    Pass `client` (an AsyncOpenAI) to share a connection pool; otherwise each `embed` call
    opens its own, which keeps the embedder usable from any event loop.
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
        client: AsyncOpenAI | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.model = model
        self.dim = dim
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/embeddings"
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        # Only text-embedding-3-* accept "dimensions"; other servers may reject the field.
        self.dimensions = dimensions
        self._api_key = api_key if isinstance(api_key, SecretStr | None) else SecretStr(api_key)
        self._client = client

    def _key(self) -> str:
        return self._api_key.get_secret_value() if self._api_key is not None else ""

    def _new_client(self) -> AsyncOpenAI:
        return AsyncOpenAI(
            api_key=self._key() or _NO_KEY,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=0,  # retried below, with our backoff and our messages
        )

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return empty_vectors(self.dim)
        if self._client is not None:
            return await self._embed_all(self._client, texts)
        async with self._new_client() as client:
            return await self._embed_all(client, texts)

    async def _embed_all(self, client: AsyncOpenAI, texts: Sequence[str]) -> Vectors:
        parts = [
            await self._embed_batch(client, batch) for batch in chunked(texts, self.batch_size)
        ]
        return np.concatenate(parts)

    async def _embed_batch(self, client: AsyncOpenAI, texts: Sequence[str]) -> Vectors:
        response = await self._post(client, [valid_text(text) for text in texts])
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

    async def _create(self, client: AsyncOpenAI, texts: list[str]) -> httpx2.Response:
        extra: dict[str, Any] = {}
        if self.dimensions is not None:
            extra["dimensions"] = self.dimensions
        headers: dict[str, Any] = {} if self._key() else {"Authorization": openai.Omit()}
        raw = await client.embeddings.with_raw_response.create(
            model=self.model,
            input=texts,
            encoding_format="float",
            extra_headers=headers,
            timeout=self.timeout,
            **extra,
        )
        return raw.http_response

    async def _post(self, client: AsyncOpenAI, texts: list[str]) -> httpx2.Response:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            delay = min(self.backoff * 2**attempt, _MAX_DELAY)
            try:
                return await self._create(client, texts)
            except openai.APIConnectionError as error:  # timeouts included
                if last:
                    raise EmbeddingError(
                        f"cannot reach the embedding server at {self.url} after {attempts} "
                        f"attempts ({type(error).__name__}: {error}); is it running, and is "
                        f"OPENAI_BASE_URL right?"
                    ) from None
            except openai.APIStatusError as error:
                if not _is_retryable(error.status_code) or last:
                    raise self._http_error(error.response, attempt + 1) from None
                asked = _retry_after(error.response)
                delay = delay if asked is None else asked
            # Jitter so that many workers throttled together do not retry together.
            await asyncio.sleep(delay * random.uniform(1.0, 1.25))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _http_error(self, response: httpx2.Response, attempts: int) -> EmbeddingError:
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
