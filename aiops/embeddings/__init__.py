"""Text embeddings: a provider protocol, a cache, the offline MiniLM model and OpenAI APIs.

embedder = get_embedder(settings)          # cached; an Embedder itself
vectors = await embedder.embed(texts)      # float32 (len(texts), embedder.dim), unit rows
"""

from aiops.embeddings.base import Embedder, EmbeddingError, Vectors
from aiops.embeddings.cache import CachedEmbedder, CacheInfo
from aiops.embeddings.factory import get_embedder
from aiops.embeddings.minilm import MiniLMEmbedder, ModelNotInstalledError, locate_model_dir
from aiops.embeddings.openai_compat import OpenAICompatEmbedder

__all__ = [
    "CacheInfo",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingError",
    "MiniLMEmbedder",
    "ModelNotInstalledError",
    "OpenAICompatEmbedder",
    "Vectors",
    "get_embedder",
    "locate_model_dir",
]
