"""Thompson sampling among close candidates, so the system keeps learning.

Always taking the top-ranked fix would never try an alternative that might work better.
Among candidates whose relevance is within `closeness` of the best, each draws a success
rate from its posterior Beta(1 + successes, 1 + failures); the highest relevance x draw
wins. A fix with a long record of success is drawn high almost always; an untried one
sometimes wins and so gets the outcomes that teach us about it.
"""

from __future__ import annotations

import random

from aiops.models.diagnosis import Candidate, Choice
from aiops.models.healing import HealingPlan, PlannedAction
from aiops.policy.models import ActionSpec

SERVICE_PLACEHOLDER = "{service}"


def applies_to(candidate: Candidate, service: str | None) -> bool:
    """Whether a known fix may act for an incident on `service`.

    Knowledge recorded for another service is a hint, not a plan: restarting the
    log-collector because bookmark-api's disk looks like its disk would act outside the
    incident. A fix applies when it was written for this service, when it names no service
    of its own, or when every action targets the incident's service by the `{service}`
    placeholder (generic runbooks)."""
    if service is None or candidate.problem_service in (None, service):
        return True
    return all(a.target in (SERVICE_PLACEHOLDER, service) for a in candidate.actions)


def applicable(similar: list[Candidate], service: str | None, closeness: float) -> list[Candidate]:
    """The candidates a plan may come from. A fix we may apply counts only if it matches
    about as well as the best match of all: an incident that looks far more like another
    service's known problem than like anything of its own is not one of its own (the demo's
    full disk matched bookmark-api's "process down" at 0.53 and log-collector's "disk full"
    far better; restarting would have been a guess)."""
    best = max((c.similarity for c in similar), default=0.0)
    return [c for c in similar if applies_to(c, service) and c.similarity >= best - closeness]


def choose_solution(
    candidates: list[Candidate], rng: random.Random, closeness: float
) -> tuple[Choice, list[Choice]] | None:
    """The chosen candidate and every draw (for the explanation); None when no candidates."""
    if not candidates:
        return None
    best = max(c.similarity for c in candidates)
    draws: list[Choice] = []
    for candidate in candidates:
        if candidate.similarity < best - closeness:
            continue
        sampled = rng.betavariate(1 + candidate.successes, 1 + candidate.failures)
        draws.append(
            Choice(
                candidate=candidate,
                sampled_success=sampled,
                score=candidate.similarity * sampled,
                why=(
                    f"similarity {candidate.similarity:.2f} x sampled success {sampled:.2f} "
                    f"from Beta({1 + candidate.successes}, {1 + candidate.failures})"
                ),
            )
        )
    chosen = max(draws, key=lambda d: d.score)
    return chosen, draws


def build_plan(
    actions: list[ActionSpec],
    service: str | None,
    *,
    problem_id: str | None,
    solution_id: str | None,
    description: str,
    why: str,
) -> HealingPlan:
    """Actions in order as numbered steps, `{service}` targets made the incident's service."""
    ordered = [
        a.model_copy(update={"target": service})
        if a.target == SERVICE_PLACEHOLDER and service
        else a
        for a in sorted(actions, key=lambda a: a.order)
    ]
    return HealingPlan(
        service=service,
        problem_id=problem_id,
        solution_id=solution_id,
        description=description,
        actions=[PlannedAction(step=str(i + 1), action=a) for i, a in enumerate(ordered)],
        why=why,
    )


def plan_for(choice: Choice, service: str | None) -> HealingPlan:
    candidate = choice.candidate
    return build_plan(
        candidate.actions,
        service,
        problem_id=candidate.problem_id,
        solution_id=candidate.solution_id,
        description=candidate.solution_description,
        why=(
            f"matches known problem {candidate.problem_description!r} ({candidate.why}); "
            f"chosen by {choice.why}"
        ),
    )
