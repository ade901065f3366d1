"""Temporal search attributes: incidents are found by these in the Web UI and CLI.

Registered by the dev stack at start and by `aiops temporal setup` on a production cluster.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

SERVICE = SearchAttributeKey.for_keyword("AiopsService")
SEVERITY = SearchAttributeKey.for_keyword("AiopsSeverity")
CATEGORY = SearchAttributeKey.for_keyword("AiopsCategory")
PHASE = SearchAttributeKey.for_keyword("AiopsPhase")
OUTCOME = SearchAttributeKey.for_keyword("AiopsOutcome")
FINGERPRINT = SearchAttributeKey.for_keyword("AiopsFingerprint")
# act, approve-all or shadow: set once the incident knows its service's mode
MODE = SearchAttributeKey.for_keyword("AiopsMode")

ALL: tuple[SearchAttributeKey[str], ...] = (
    SERVICE,
    SEVERITY,
    CATEGORY,
    PHASE,
    OUTCOME,
    FINGERPRINT,
    MODE,
)


def cli_flags() -> list[str]:
    """`temporal server start-dev` flags registering every attribute."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags
