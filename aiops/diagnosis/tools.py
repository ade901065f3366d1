"""Planning with tools: a known fix whose action is an approved tool plans the tool's
primitive steps, expanded here, before a plan exists. The healing workflow then runs each
step through the guard, the policy and the saga exactly as it runs any other action; no
adapter ever sees a tool.

A fix whose action is a tool that is not approved (proposed, refused, retired) is passed
over, and so is one whose tool's pre-conditions do not hold on the incident's service. A
fix whose action neither an adapter nor any tool offers is left as it was (the guard
refuses it, as before) and recorded as a request: the trigger for building that tool.
The common case, fixes of primitive actions only, costs no query.
"""

from __future__ import annotations

import logging

import asyncpg

from aiops.actions.guard import ADAPTER_OF_TYPE
from aiops.models.diagnosis import Candidate
from aiops.policy.models import ActionSpec
from aiops.registry import ServiceRegistry
from aiops.registry.store import UnknownService
from aiops.tools.models import SERVICE, ToolRecord, ToolRequest
from aiops.tools.spec import ToolSpecError, expand
from aiops.tools.store import ToolStore
from aiops.tools.validation import condition_refusal

log = logging.getLogger(__name__)


class ToolPlanner:
    def __init__(self, store: ToolStore, registry: ServiceRegistry) -> None:
        self._store = store
        self._registry = registry

    async def expand(self, candidates: list[Candidate], service: str | None) -> list[Candidate]:
        names = {
            a.action_type
            for c in candidates
            for a in c.actions
            if a.action_type not in ADAPTER_OF_TYPE
        }
        if not names:
            return candidates
        tools = await self._store.by_names(names)
        planned = []
        for candidate in candidates:
            expanded = await self._expand(candidate, tools, service)
            if expanded is not None:
                planned.append(expanded)
        return planned

    async def _expand(
        self, candidate: Candidate, tools: dict[str, ToolRecord], service: str | None
    ) -> Candidate | None:
        actions: list[ActionSpec] = []
        used: list[str] = []
        for action in sorted(candidate.actions, key=lambda a: a.order):
            order = len(actions) + 1
            if action.action_type in ADAPTER_OF_TYPE:
                actions.append(action.model_copy(update={"order": order}))
                continue
            tool = tools.get(action.action_type)
            if tool is None:
                await self._request(candidate, action, service)
                return candidate
            if tool.status != "approved":
                log.info(
                    "passing over %s: tool %s is %s", candidate.solution_id, tool.name, tool.status
                )
                return None
            why = await self._precondition_refusal(tool, action, service)
            if why is not None:
                log.info("passing over %s: tool %s: %s", candidate.solution_id, tool.name, why)
                return None
            try:
                steps = expand(tool.spec, action.parameters, action.target, first_order=order)
            except ToolSpecError as error:
                log.info("passing over %s: %s", candidate.solution_id, error)
                return None
            actions.extend(steps)
            used.append(f"tool {tool.name} v{tool.version} ({len(steps)} steps)")
        return candidate.model_copy(
            update={"actions": actions, "why": "; ".join([candidate.why, *used]).strip("; ")}
        )

    async def _precondition_refusal(
        self, tool: ToolRecord, action: ActionSpec, service: str | None
    ) -> str | None:
        name = service if action.target == SERVICE else action.target
        if name is None or not tool.spec.preconditions:
            return None
        try:
            record = await self._registry.get(name)
        except UnknownService:
            return f"{name} is not registered"
        for condition in tool.spec.preconditions:
            why = condition_refusal(condition, record)
            if why is not None:
                return f"pre-condition {condition}: {why}"
        return None

    async def _request(self, candidate: Candidate, action: ActionSpec, service: str | None) -> None:
        # a request is advice for `aiops tools build`; losing one must not cost a diagnosis
        try:
            await self._store.record_request(
                ToolRequest(
                    action_type=action.action_type,
                    problem_id=candidate.problem_id,
                    problem_description=candidate.problem_description,
                    solution_id=candidate.solution_id,
                    solution_description=candidate.solution_description,
                    service=service or candidate.problem_service,
                    parameters=action.parameters,
                )
            )
        except (asyncpg.PostgresError, OSError) as error:
            log.warning("tool request for %s not recorded: %s", action.action_type, error)
