"""Errors a user of the knowledge graph can hit, each with a message that says what to do."""

from __future__ import annotations

from aiops.errors import AiopsError


class KnowledgeError(AiopsError):
    """A knowledge-graph request cannot be served: unknown node, bad argument, schema state."""
