"""The embedder protocol every provider satisfies, and helpers the providers share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from aiops.errors import AiopsError

Vectors = NDArray[np.float32]
"""float32 array of shape (n, dim); every non-zero row has unit L2 norm."""

DEFAULT_BATCH_SIZE = 32

_T = TypeVar("_T")


class EmbeddingError(AiopsError):
    """Embedding failed: model missing, server unreachable or an unexpected answer."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    model: str
    dim: int

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One row per text, in order: shape (len(texts), dim), float32, L2-normalised."""
        ...


def l2_normalise(vectors: NDArray[np.floating]) -> Vectors:
    """Unit rows in float32; an all-zero row stays zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def empty_vectors(dim: int) -> Vectors:
    return np.zeros((0, dim), dtype=np.float32)


def valid_text(text: str) -> str:
    """`text` with lone surrogates (from bytes decoded with surrogateescape, common in log
    lines) replaced by U+FFFD: neither the tokenizer nor a JSON body accepts them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def chunked(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
