"""A custom aiops agent: memory trouble is met by clearing the service's cache first."""

from aiops.agents.models import AgentContext, Proposal
from aiops.agents.protocol import BaseAgent
from aiops.policy.models import ActionSpec


class CacheFirst(BaseAgent):
    agent_id = "cache-first"
    kind = "diagnostic"
    capabilities = ["diagnose:anomaly", "diagnose:error"]

    async def analyze(self, context: AgentContext) -> Proposal | None:
        if "memory" not in context.text.lower():
            return None  # not my kind of incident: no vote
        return Proposal(
            agent_id=self.agent_id,
            description="Clear the cache before anything restarts",
            plan=[ActionSpec(action_type="cache_clear", target="{service}")],
            confidence=0.8,
            why="memory grows with the cache here; a restart loses warm state for nothing",
        )
