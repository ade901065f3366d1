"""The built-in diagnostic agent: the knowledge graph's candidates, Thompson-sampled by
aiops.diagnosis.choose exactly as DiagnosisWorkflow does, as a proposal.

`proposal_of` is the one translation from a Choice to a Proposal; the workflow calls it
on its own draw (workflow.random()), so the agent's proposal in a vote is today's choice.
"""

from __future__ import annotations

import random
from typing import Final

from aiops.agents.models import AgentContext, Proposal
from aiops.agents.protocol import BaseAgent
from aiops.agents.vote import DIAGNOSTIC_AGENT
from aiops.diagnosis.choose import applicable, choose_solution, plan_for
from aiops.models.diagnosis import Choice

MIN_SIMILARITY: Final = 0.45
CLOSENESS: Final = 0.08


def proposal_of(choice: Choice, service: str | None) -> Proposal:
    plan = plan_for(choice, service)
    return Proposal(
        agent_id=DIAGNOSTIC_AGENT,
        description=plan.description,
        plan=[p.action for p in plan.actions],
        confidence=min(1.0, max(0.0, choice.score)),
        why=plan.why,
        problem_id=plan.problem_id,
        solution_id=plan.solution_id,
    )


class DiagnosticAgent(BaseAgent):
    agent_id = DIAGNOSTIC_AGENT
    kind = "diagnostic"

    def __init__(
        self, min_similarity: float = MIN_SIMILARITY, closeness: float = CLOSENESS
    ) -> None:
        self.capabilities = ["diagnose"]
        self._min_similarity = min_similarity
        self._closeness = closeness

    async def analyze(self, context: AgentContext) -> Proposal | None:
        similar = [c for c in context.candidates if c.similarity >= self._min_similarity]
        known = applicable(similar, context.service, self._closeness)
        # seeded by the incident: the same incident draws the same way
        picked = choose_solution(known, random.Random(context.incident_id), self._closeness)
        return None if picked is None else proposal_of(picked[0], context.service)
