"""A known problem with one simulated fix, for tests that need diagnosis to find a match."""

from __future__ import annotations

from aiops.knowledge import KnowledgeGraph, ProblemIn, SolutionIn
from aiops.policy.models import ActionSpec

IMPORT_TIMEOUT = "Import requests time out with large bookmark files"


async def seed_import_timeout(
    kg: KnowledgeGraph,
    action_type: str = "cache_clear",
    description: str = "Clear the import cache",
) -> tuple[str, str]:
    """(problem id, solution id) of the import-service timeout, fixed by one simulated
    action that always succeeds."""
    problem = await kg.add_problem(
        ProblemIn(
            description=IMPORT_TIMEOUT, category="timeout", context={"service": "import-service"}
        )
    )
    solution_id = await kg.add_solution(
        problem.id,
        SolutionIn(
            description=description,
            actions=[
                ActionSpec(
                    action_type=action_type,
                    target="import-service",
                    parameters={"adapter": "simulated", "success_probability": 1.0},
                )
            ],
        ),
    )
    return problem.id, solution_id
