"""Agent activities: ask the agents for proposals (diagnosis), tell them the outcome
(learning). Every agent call is bounded by a timeout and its failure is the agent's: it is
reported (unhealthy in the registry) and left out, never raised into the workflow."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from temporalio import activity

from aiops.agents.models import (
    AgentFailure,
    AgentLearningRequest,
    AgentLearningResult,
    AgentOutcome,
    Proposal,
    ProposalCollection,
    ProposalRequest,
)
from aiops.agents.presence import AgentPresence
from aiops.agents.protocol import UniversalAgent, wants
from aiops.agents.vote import DIAGNOSTIC_AGENT

log = logging.getLogger(__name__)
T = TypeVar("T")


class AgentActivities:
    def __init__(self, presence: AgentPresence, timeout_s: float = 5.0) -> None:
        self._presence = presence
        self._agents: Sequence[UniversalAgent] = presence.agents
        self._timeout_s = timeout_s

    async def _call(
        self, agent: UniversalAgent, what: str, call: Awaitable[T], timeout: float
    ) -> T | AgentFailure:
        try:
            result = await asyncio.wait_for(call, timeout)
        except TimeoutError:
            failure = AgentFailure(
                agent_id=agent.agent_id, error=f"{what} timed out after {timeout:g}s"
            )
        except Exception as error:
            failure = AgentFailure(agent_id=agent.agent_id, error=f"{what} raised {error!r}"[:500])
        else:
            self._presence.report(agent.agent_id, None)
            return result
        log.warning("agent %s: %s", agent.agent_id, failure.error)
        await self._presence.failed(agent.agent_id, failure.error)
        return failure

    @activity.defn(name="collect_proposals")
    async def collect_proposals(self, request: ProposalRequest) -> ProposalCollection:
        """Proposals of every agent that diagnoses this category, side by side. The built-in
        diagnostic agent is not asked: its proposal is the workflow's own draw, passed in
        context.proposals."""
        context = request.context
        timeout = request.timeout_s or self._timeout_s
        asked = [
            a for a in self._agents if a.agent_id != DIAGNOSTIC_AGENT and wants(a, context.category)
        ]
        answers = await asyncio.gather(
            *(self._call(a, "collaborate", a.collaborate(context), timeout) for a in asked)
        )
        collection = ProposalCollection()
        for agent, answer in zip(asked, answers, strict=True):
            if isinstance(answer, AgentFailure):
                collection.failures.append(answer)
            elif answer is None:
                continue
            elif not isinstance(answer, Proposal):
                error = f"collaborate returned {type(answer).__name__}, not a Proposal or None"
                await self._presence.failed(agent.agent_id, error)
                collection.failures.append(AgentFailure(agent_id=agent.agent_id, error=error))
            else:
                # an agent votes as itself, whatever it wrote in agent_id
                collection.proposals.append(answer.model_copy(update={"agent_id": agent.agent_id}))
        voters = {p.agent_id for p in [*context.proposals, *collection.proposals]}
        records = await self._presence.tracks.get(voters)
        collection.weights = {i: r.weight for i, r in records.items()}
        return collection

    @activity.defn(name="record_agent_outcomes")
    async def record_agent_outcomes(self, request: AgentLearningRequest) -> AgentLearningResult:
        """Score the agents that proposed the plan carried out (healed: success; failed or
        rolled back: failure; anything else: not scored), then let every agent learn."""
        key = (
            activity.info().workflow_id or request.incident_id
        )  # the learning run: a retry scores nobody twice
        success = {"healed": True, "compensated": False, "failed": False}.get(request.outcome)
        result = AgentLearningResult()
        proposed = {b.proposal.agent_id: b for b in request.ballots}
        for agent_id, voted in proposed.items():
            if success is None or voted.plan_key != request.winning_plan:
                continue
            await self._presence.tracks.record(agent_id, key, success, request.incident_id)
            result.scored[agent_id] = success
        outcomes = []
        for agent in self._agents:
            ballot = proposed.get(agent.agent_id)
            chosen = ballot is not None and ballot.plan_key == request.winning_plan
            outcomes.append(
                AgentOutcome(
                    incident_id=request.incident_id,
                    key=key,
                    outcome=request.outcome,
                    proposal=ballot.proposal if ballot else None,
                    chosen=chosen,
                    success=success if chosen else None,
                    solution_id=request.solution_id,
                    resolution_time_s=request.resolution_time_s,
                )
            )
        answers = await asyncio.gather(
            *(
                self._call(a, "learn", a.learn(o), self._timeout_s)
                for a, o in zip(self._agents, outcomes, strict=True)
            )
        )
        result.failures = [a for a in answers if isinstance(a, AgentFailure)]
        return result
