"""Build the configured embedder from Settings, wrapped in the cache."""

from __future__ import annotations

from aiops.config import KNOWN_MODEL_DIMS, ConfigError, Settings
from aiops.embeddings.base import DEFAULT_BATCH_SIZE, Embedder
from aiops.embeddings.cache import CachedEmbedder
from aiops.embeddings.minilm import MODEL_DIM, MODEL_NAME, MiniLMEmbedder
from aiops.embeddings.openai_compat import DEFAULT_BATCH_SIZE as DEFAULT_REQUEST_SIZE
from aiops.embeddings.openai_compat import OpenAICompatEmbedder

_OPENAI_HOST = "api.openai.com"


def get_embedder(
    settings: Settings,
    *,
    batch_size: int | None = None,
    cache_size: int | None = None,
) -> CachedEmbedder:
    """The embedder the settings ask for, behind an LRU cache of `cache_size` texts.

    `batch_size` defaults to the provider's own (32 texts for the local model, 256 per
    request for an API). Raises ConfigError for combinations that cannot work, before any
    text is embedded.
    """
    dim = settings.resolved_embedding_dim
    batch_size = batch_size or settings.embedding_batch_size
    cache_size = settings.embedding_cache_size if cache_size is None else cache_size
    inner: Embedder
    if settings.embedding_provider == "local":
        if settings.embedding_model != MODEL_NAME:
            raise ConfigError(
                f"AIOPS_EMBEDDING_PROVIDER=local only runs {MODEL_NAME}, not "
                f"AIOPS_EMBEDDING_MODEL={settings.embedding_model!r}; serve other models "
                f"through an OpenAI-compatible server with AIOPS_EMBEDDING_PROVIDER=openai"
            )
        if dim != MODEL_DIM:
            raise ConfigError(
                f"AIOPS_EMBEDDING_DIM={dim} does not match {MODEL_NAME}, which gives "
                f"{MODEL_DIM}-dimensional vectors"
            )
        inner = MiniLMEmbedder(
            batch_size=batch_size or DEFAULT_BATCH_SIZE, threads=settings.embedding_threads
        )
    else:
        if settings.openai_api_key is None and _OPENAI_HOST in settings.openai_base_url:
            raise ConfigError(
                f"OPENAI_API_KEY is required for AIOPS_EMBEDDING_PROVIDER=openai with "
                f"OPENAI_BASE_URL={settings.openai_base_url}"
            )
        native = KNOWN_MODEL_DIMS.get(settings.embedding_model)
        # text-embedding-3-* can shorten their vectors server-side; ask only when needed.
        shorten = settings.embedding_model.startswith("text-embedding-3") and dim != native
        inner = OpenAICompatEmbedder(
            model=settings.embedding_model,
            dim=dim,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            dimensions=dim if shorten else None,
            batch_size=batch_size or DEFAULT_REQUEST_SIZE,
        )
    return CachedEmbedder(inner, cache_size)
