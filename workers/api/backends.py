"""What every request of `aiops api` shares: pools, clients, the verifier, the signer."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from temporalio.client import Client

from aiops.auth import ApprovalSigner, TokenVerifier
from aiops.auth.keys import approval_key
from aiops.config import Settings
from aiops.embeddings import get_embedder
from aiops.events.mesh import EventMesh
from aiops.knowledge import KnowledgeGraph
from aiops.registry import ServiceRegistry
from aiops.registry.secrets import load_fernet


class Backends:
    """What every request shares: pools, clients, the token verifier, the approval signer."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        temporal: Client,
        verifier: TokenVerifier,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.temporal = temporal
        self.verifier = verifier
        self.signer = ApprovalSigner(approval_key(settings))
        self.mesh = EventMesh(
            redis,
            maxlen=settings.events_maxlen,
            dead_letter_stream=settings.dead_letter_stream,
            max_event_bytes=settings.events_max_payload_bytes,
        )
        self.registry = ServiceRegistry(pool, load_fernet(settings))
        self._kg: KnowledgeGraph | None = None

    @property
    def kg(self) -> KnowledgeGraph:
        # the embedding model loads on the first search, not at start
        if self._kg is None:
            self._kg = KnowledgeGraph(
                self.pool, get_embedder(self.settings), self.settings.similarity_threshold
            )
        return self._kg
