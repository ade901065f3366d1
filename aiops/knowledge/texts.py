"""What text each kind of node is embedded from: one definition for writing, verifying and
re-embedding, so a re-embedded node gets exactly the vector a fresh insert would get.

Text is masked for PII and secrets here, before any embedder sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiops.knowledge.chunking import WINDOW_WORDS, chunk_texts, reduce_text
from aiops.privacy import mask

# Node types that carry an embedding. Insights and tools are reached through edges, not by
# similarity, so they are stored without one.
EMBEDDED_TYPES: tuple[str, ...] = ("problem", "solution", "pattern")


def problem_text(
    description: str,
    template: str | None,
    error_patterns: Sequence[str],
    title: str | None = None,
) -> str:
    """The title first (it survives the model's truncation), then the description, reduced
    to its templates when it is longer than one window (a short one fits as it is)."""
    if len(description.split()) > WINDOW_WORDS:
        description = reduce_text(description)
    parts = [title or "", description, template or "", " ".join(error_patterns)]
    return mask(" \n".join(p for p in parts if p))


def problem_chunks(description: str, title: str | None) -> list[str]:
    """The masked texts of a problem's extra windows (knowledge_chunks); [] when short."""
    return [mask(text) for text in chunk_texts(title, description)]


def node_text(node_type: str, data: dict[str, Any]) -> str | None:
    """The masked text a node of this type is embedded from; None when it has none."""
    description = str(data.get("description") or "")
    if node_type == "problem":
        patterns = data.get("error_patterns") or []
        return problem_text(
            description, data.get("template"), [str(p) for p in patterns], data.get("title")
        )
    if node_type == "pattern":
        template = data.get("template")
        text = description if not template else f"{description} \n{template}"
        return mask(text) if text.strip() else None
    text = description or str(data.get("summary") or "")
    return mask(text) if text.strip() else None
