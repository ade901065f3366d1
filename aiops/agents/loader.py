"""Custom agents from the `aiops.agents` entry-point group.

An entry point names a class (built with no arguments), a function returning an agent, or
an agent object. Each is checked against the UniversalAgent protocol; one that fails to
import, to build or to check is reported by its entry point's name and left out: a broken
plug-in never stops the worker or the diagnosis.
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Final

from aiops.agents.protocol import METHODS, UniversalAgent
from aiops.errors import AiopsError

log = logging.getLogger(__name__)

GROUP: Final = "aiops.agents"
# ids are rows of the agents registry (with "@host" added): keep to its alphabet
_AGENT_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,150}$")


class AgentLoadError(AiopsError):
    """A custom agent's entry point is broken; the message names it and says why."""

    def __init__(self, entry_point: str, reason: str) -> None:
        super().__init__(f"agent entry point {entry_point!r} ({GROUP}): {reason}")
        self.entry_point = entry_point
        self.reason = reason


@dataclass
class LoadedAgents:
    agents: list[UniversalAgent] = field(default_factory=list)
    errors: list[AgentLoadError] = field(default_factory=list)


def validate(candidate: object, name: str, taken: set[str] | None = None) -> UniversalAgent:
    """The object as an agent, or AgentLoadError naming `name` and what is wrong."""
    missing = [
        m for m in ("agent_id", "kind", "capabilities", *METHODS) if not hasattr(candidate, m)
    ]
    if missing:
        raise AgentLoadError(name, f"not a UniversalAgent: missing {', '.join(missing)}")
    sync = [m for m in METHODS if not inspect.iscoroutinefunction(getattr(candidate, m))]
    if sync:
        raise AgentLoadError(name, f"{', '.join(sync)} must be async (coroutine) methods")
    agent_id = getattr(candidate, "agent_id")  # noqa: B009 - checked above, typed below
    if not isinstance(agent_id, str) or not _AGENT_ID.match(agent_id):
        raise AgentLoadError(
            name, f"agent_id {agent_id!r} must be 1-151 of letters, digits and _.:-"
        )
    capabilities = getattr(candidate, "capabilities")  # noqa: B009
    if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
        raise AgentLoadError(name, "capabilities must be a list of strings")
    if taken is not None and agent_id in taken:
        raise AgentLoadError(name, f"agent_id {agent_id!r} is already taken by another agent")
    assert isinstance(candidate, UniversalAgent)
    return candidate


def build(entry_point: EntryPoint, taken: set[str] | None = None) -> UniversalAgent:
    try:
        target = entry_point.load()
    except Exception as error:
        raise AgentLoadError(
            entry_point.name, f"cannot import {entry_point.value}: {error!r}"
        ) from error
    if inspect.isclass(target) or (callable(target) and not hasattr(target, "agent_id")):
        try:
            target = target()
        except Exception as error:
            raise AgentLoadError(
                entry_point.name, f"building {entry_point.value}() failed: {error!r}"
            ) from error
    return validate(target, entry_point.name, taken)


def load_custom_agents(taken: set[str] | None = None) -> LoadedAgents:
    """Every valid agent of the group; `taken`: ids already in use (the built-ins)."""
    loaded = LoadedAgents()
    used = set(taken or ())
    for entry_point in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            agent = build(entry_point, used)
        except AgentLoadError as error:
            log.error("%s", error)
            loaded.errors.append(error)
            continue
        used.add(agent.agent_id)
        loaded.agents.append(agent)
    return loaded
