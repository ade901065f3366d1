"""An LRU cache in front of any embedder, so repeated texts cost nothing the second time."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aiops.embeddings.base import Embedder, Vectors, empty_vectors

DEFAULT_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    max_size: int


class CachedEmbedder:
    """Wraps an embedder; an Embedder itself.

    Keys are a SHA-256 of model, dimension and text, so long texts do not stay in memory
    and two models (or two dimensions of one model) never share an entry. A hit is a text
    served without asking the provider; a miss is a text the provider embedded. A text
    repeated within one call is embedded once, and so is a text that concurrent calls ask
    for (the later ones wait for the first one's answer, and count as hits).
    """

    def __init__(self, inner: Embedder, max_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.inner = inner
        self.model = inner.model
        self.dim = inner.dim
        self._entries: OrderedDict[bytes, Vectors] = OrderedDict()
        self._max_size = 0
        self._pending: dict[bytes, asyncio.Future[Vectors]] = {}
        self.hits = 0
        self.misses = 0
        self.set_cache_size(max_size)

    @property
    def max_size(self) -> int:
        return self._max_size

    def set_cache_size(self, max_size: int) -> None:
        """Change the capacity at run time; shrinking drops the least recently used."""
        if max_size < 0:
            raise ValueError(f"cache size must be >= 0, got {max_size}")
        self._max_size = max_size
        while len(self._entries) > max_size:
            self._entries.popitem(last=False)

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, len(self._entries), self._max_size)

    def clear_cache(self) -> None:
        self._entries.clear()
        self.hits = 0
        self.misses = 0

    def _key(self, text: str) -> bytes:
        digest = hashlib.sha256()
        digest.update(f"{self.model}\0{self.dim}\0".encode())
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.digest()

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return empty_vectors(self.dim)
        keys = [self._key(text) for text in texts]
        found: dict[bytes, Vectors] = {}
        todo: dict[bytes, str] = {}
        waiting: dict[bytes, tuple[str, asyncio.Future[Vectors]]] = {}
        for key, text in zip(keys, texts, strict=True):
            if key in found or key in todo or key in waiting:
                continue
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                found[key] = cached
            elif key in self._pending:
                waiting[key] = (text, self._pending[key])
            else:
                todo[key] = text
        if todo:
            loop = asyncio.get_running_loop()
            mine = {key: loop.create_future() for key in todo}
            self._pending.update(mine)
            try:
                fresh = await self.inner.embed(list(todo.values()))
            except Exception as error:
                for future in mine.values():
                    future.set_exception(error)
                    future.exception()  # nobody waiting for it is no unretrieved error
                raise
            except BaseException:  # cancelled: whoever waits embeds it for themselves
                for future in mine.values():
                    future.cancel()
                raise
            finally:
                for key in mine:
                    self._pending.pop(key, None)
            for key, row in zip(todo, fresh, strict=True):
                # A copy, so the caller mutating its result cannot corrupt the cache.
                row = row.copy()
                row.flags.writeable = False
                found[key] = row
                self._remember(key, row)
                mine[key].set_result(row)
        for key, (text, future) in waiting.items():
            try:
                found[key] = await asyncio.shield(future)
            except asyncio.CancelledError:
                if not future.cancelled():
                    raise  # this caller was cancelled
                found[key] = (await self.embed([text]))[0]
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)

    def _remember(self, key: bytes, row: Vectors) -> None:
        if self._max_size == 0:
            return
        self._entries[key] = row
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_size:
            self._entries.popitem(last=False)
