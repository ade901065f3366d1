"""The seed's UniversalAgent contract as a Protocol, and a base with harmless defaults.

An agent has a stable `agent_id` (its track record is kept under it), a `kind` and
`capabilities` ("diagnose", "diagnose:<category>", "heal", "monitor", "learn", ...).
Every method is a coroutine; any of them may be slow or raise: the engine bounds each call
by a timeout and counts a failure against the agent, never against the incident.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aiops.agents.models import (
    AgentAction,
    AgentContext,
    AgentObservation,
    AgentOutcome,
    AgentStatus,
    Proposal,
)
from aiops.events.envelope import Event

METHODS = ("observe", "analyze", "act", "learn", "collaborate", "health_check")


@runtime_checkable
class UniversalAgent(Protocol):
    agent_id: str
    kind: str
    capabilities: list[str]

    async def observe(self, event: Event) -> AgentObservation | None:
        """Notice something in an event (None: nothing worth saying)."""
        ...

    async def analyze(self, context: AgentContext) -> Proposal | None:
        """This agent's own plan for the incident, or None when it has none."""
        ...

    async def act(self, context: AgentContext, proposal: Proposal) -> AgentAction:
        """What carrying out a chosen proposal means for this agent."""
        ...

    async def learn(self, outcome: AgentOutcome) -> None:
        """Hear how the incident ended; called once per learning run (keyed, retries repeat)."""
        ...

    async def collaborate(self, context: AgentContext) -> Proposal | None:
        """A proposal seeing the others' (context.proposals): endorse one, or offer another."""
        ...

    async def health_check(self) -> AgentStatus: ...


class BaseAgent:
    """Defaults for everything but analyze: subclass it and write analyze."""

    agent_id: str = "custom"
    kind: str = "custom"
    capabilities: list[str] = ["diagnose"]

    async def observe(self, event: Event) -> AgentObservation | None:
        return None

    async def analyze(self, context: AgentContext) -> Proposal | None:
        return None

    async def act(self, context: AgentContext, proposal: Proposal) -> AgentAction:
        return AgentAction(agent_id=self.agent_id, description="nothing to do")

    async def learn(self, outcome: AgentOutcome) -> None:
        return None

    async def collaborate(self, context: AgentContext) -> Proposal | None:
        return await self.analyze(context)

    async def health_check(self) -> AgentStatus:
        return AgentStatus(agent_id=self.agent_id, health="healthy")


def wants(agent: UniversalAgent, category: str | None) -> bool:
    """Whether an agent diagnoses incidents of this category."""
    caps = set(agent.capabilities)
    return "diagnose" in caps or (category is not None and f"diagnose:{category}" in caps)
