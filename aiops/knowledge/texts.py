"""What text each kind of node is embedded from: one definition for writing, verifying and
re-embedding, so a re-embedded node gets exactly the vector a fresh insert would get.

Text is masked for PII and secrets here, before any embedder sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiops.privacy import mask

# Node types that carry an embedding. Insights and tools are reached through edges, not by
# similarity, so they are stored without one.
EMBEDDED_TYPES: tuple[str, ...] = ("problem", "solution", "pattern")


def problem_text(description: str, template: str | None, error_patterns: Sequence[str]) -> str:
    parts = [description, template or "", " ".join(error_patterns)]
    return mask(" \n".join(p for p in parts if p))


def node_text(node_type: str, data: dict[str, Any]) -> str | None:
    """The masked text a node of this type is embedded from; None when it has none."""
    description = str(data.get("description") or "")
    if node_type == "problem":
        patterns = data.get("error_patterns") or []
        return problem_text(description, data.get("template"), [str(p) for p in patterns])
    if node_type == "pattern":
        template = data.get("template")
        text = description if not template else f"{description} \n{template}"
        return mask(text) if text.strip() else None
    text = description or str(data.get("summary") or "")
    return mask(text) if text.strip() else None
