"""An admin's decisions on a tool. Approval puts it in the knowledge graph as a solution of
the problem it was built for (unless a fix there already plans with it), so diagnosis finds
it like any fix and its outcomes are learned like any fix's."""

from __future__ import annotations

from collections.abc import Callable

from aiops.knowledge import KnowledgeGraph, SolutionIn
from aiops.policy.models import ActionSpec
from aiops.tools.models import SERVICE, ToolRecord
from aiops.tools.store import ToolError, ToolStore


async def approve(
    store: ToolStore,
    name: str,
    actor: str,
    reason: str = "",
    kg: Callable[[], KnowledgeGraph] | None = None,
    *,
    version: int,
) -> ToolRecord:
    """version: the one the admin read; another one (a redraft stored meanwhile) is
    refused, here and again under the row's lock. kg: the knowledge graph, made only when
    a new solution must be embedded."""
    record = await store.require(name)
    store.same_version(record, version)
    if record.status != "proposed":
        # decide() says why (refused: which check), without touching the graph first
        return await store.decide(
            name,
            "approved",
            actor,
            allowed_from=("proposed",),
            reason=reason,
            expected_version=version,
        )
    solution_id = record.solution_id
    if record.problem_id is not None and solution_id is None:
        solution_id = await store.solution_for(name, record.problem_id)
        if solution_id is None:
            if kg is None:
                raise ToolError(f"approving {name} adds a solution: the knowledge graph is needed")
            solution_id = await kg().add_solution(
                record.problem_id,
                SolutionIn(
                    description=f"{record.spec.description} (tool {name})",
                    actions=[ActionSpec(action_type=name, target=SERVICE)],
                ),
            )
    return await store.decide(
        name,
        "approved",
        actor,
        allowed_from=("proposed",),
        reason=reason,
        solution_id=solution_id,
        expected_version=version,
    )


async def retire(
    store: ToolStore, name: str, actor: str, reason: str = "", *, version: int | None = None
) -> ToolRecord:
    """A retired tool plans nothing: fixes that use it are passed over by diagnosis.
    version: the one the admin means; another one (stored meanwhile) is refused."""
    if not reason:
        raise ToolError("say why the tool is retired (--reason)")
    return await store.decide(
        name,
        "retired",
        actor,
        allowed_from=("approved", "proposed"),
        reason=reason,
        expected_version=version,
    )
