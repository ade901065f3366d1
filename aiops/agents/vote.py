"""The weighted vote among agents' proposals: pure and deterministic (it runs in a workflow).

Each proposal is a ballot worth weight x confidence, the weight being the agent's track
record (Beta posterior mean of its chosen proposals that healed vs failed; 0.5 unknown).
Proposals of the same plan (the same actions in the same order) add up. The plan with the
highest total wins; ties go to the plan more agents proposed, then to the built-in
diagnostic agent's plan (today's choice), then to the smallest key, so the same inputs
always give the same winner.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Final

from aiops.agents.proposals import AgentFailure, Ballot, PlanTally, Proposal, VoteResult
from aiops.diagnosis.choose import SERVICE_PLACEHOLDER, build_plan
from aiops.models.healing import HealingPlan
from aiops.policy.models import ActionSpec

UNKNOWN_WEIGHT: Final = 0.5
DIAGNOSTIC_AGENT: Final = "aiops.diagnostic"


def plan_key(actions: Iterable[ActionSpec], service: str | None = None) -> str:
    """A canonical text for a plan: what is done to what, in order (the `order` field sets
    the order; its numbers do not matter). "{service}" counts as the incident's service."""
    steps = []
    for action in sorted(actions, key=lambda a: a.order):
        target = service if action.target == SERVICE_PLACEHOLDER and service else action.target
        steps.append(
            {"type": action.action_type, "target": target, "parameters": action.parameters}
        )
    return json.dumps(steps, sort_keys=True, separators=(",", ":"), default=str)


def cast_vote(
    proposals: Iterable[Proposal],
    weights: Mapping[str, float],
    *,
    service: str | None = None,
    failures: Iterable[AgentFailure] = (),
) -> VoteResult:
    ballots = []
    for proposal in proposals:
        if not proposal.plan:
            continue  # a proposal to do nothing is not a plan to vote for
        weight = weights.get(proposal.agent_id, UNKNOWN_WEIGHT)
        ballots.append(
            Ballot(
                proposal=proposal,
                weight=weight,
                plan_key=plan_key(proposal.plan, service),
                score=weight * proposal.confidence,
            )
        )
    tallies: dict[str, PlanTally] = {}
    for ballot in ballots:
        tally = tallies.get(ballot.plan_key)
        if tally is None:
            tally = tallies[ballot.plan_key] = PlanTally(
                plan_key=ballot.plan_key,
                description=ballot.proposal.description,
                agents=[],
                score=0.0,
            )
        tally.agents.append(ballot.proposal.agent_id)
        tally.score += ballot.score

    def rank(t: PlanTally) -> tuple[float, int, bool, str]:
        # reversed key, so the smallest key wins a full tie
        return (-round(t.score, 12), -len(t.agents), DIAGNOSTIC_AGENT not in t.agents, t.plan_key)

    ordered = sorted(tallies.values(), key=rank)
    result = VoteResult(ballots=ballots, tallies=ordered, failures=list(failures))
    if not ordered:
        result.why = "no agent proposed a plan"
        return result
    best = ordered[0]
    # the winning plan as its most confident proposer wrote it
    result.winner = max(
        (b for b in ballots if b.plan_key == best.plan_key), key=lambda b: b.score
    ).proposal
    result.winning_plan = best.plan_key
    result.why = _why(best, ordered[1:], ballots)
    return result


def _why(best: PlanTally, others: list[PlanTally], ballots: list[Ballot]) -> str:
    def votes(tally: PlanTally) -> str:
        parts = [
            f"{b.proposal.agent_id} {b.weight:.2f}x{b.proposal.confidence:.2f}"
            for b in ballots
            if b.plan_key == tally.plan_key
        ]
        return f"{tally.description!r} {tally.score:.2f} ({', '.join(parts)})"

    why = f"vote: {votes(best)} won"
    if others:
        why += "; against " + "; ".join(votes(t) for t in others)
    return why


def plan_from_proposal(proposal: Proposal, service: str | None, why: str) -> HealingPlan:
    """The HealingPlan of a winning proposal (the policy still checks every action)."""
    return build_plan(
        proposal.plan,
        service,
        problem_id=proposal.problem_id,
        solution_id=proposal.solution_id,
        description=proposal.description,
        why=why,
    )
