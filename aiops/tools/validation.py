"""Validation of a tool before anyone may approve it, in four stages, each a Check:

1. schema: steps are registered primitive actions, templates name declared parameters,
   defaults have their declared types, an undo is promised only where an adapter can undo;
2. policy: every step, for every value its parameters may take, passes the policy's own
   evaluation (aiops.policy.evaluate) and the forbidden floor: a tool never contains what
   the policy refuses;
3. dry run: the steps run on the simulated adapter against the target's registry record
   (parameters checked against its bounds, pre-conditions), then are undone in reverse;
4. staging trial: when a staging service stands in for the target, the steps run for
   real through the guard and the adapters (aiops.tools.trial).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from pydantic import ValidationError

from aiops.actions.base import ActionContext, ActionOutcome
from aiops.actions.guard import ADAPTER_OF_TYPE, target_kind
from aiops.actions.params import PARAMS, parameter_refusal
from aiops.actions.simulated import SimulatedAdapter
from aiops.policy import evaluate, forbidden_reason
from aiops.policy.models import ACTION_CLASS_OF_TYPE, ActionSpec, Policy, PolicyContext
from aiops.registry.models import ServiceRecord
from aiops.tools.models import (
    SERVICE,
    UNDOABLE,
    Check,
    Condition,
    ToolParameter,
    ToolSpec,
    ToolStep,
    referenced,
    render,
)
from aiops.tools.spec import ToolSpecError, bind, expand

# parameter positions that decide what an action does, not how much: free text there
# would let an argument choose a command or a config key the policy never saw
_DECISIVE = ("command", "key")
# combinations of choices checked per step; a step with more is refused, not sampled
_MAX_SAMPLES = 256
_EXAMPLE: dict[str, Any] = {"string": "x", "integer": 1, "number": 1.0, "boolean": True}


def primitive_types() -> list[str]:
    """The action types a registered adapter offers: what a tool's steps may be."""
    return sorted(ADAPTER_OF_TYPE)


def check_schema(spec: ToolSpec) -> Check:
    problems: list[str] = []
    if spec.name in ADAPTER_OF_TYPE or spec.name in ACTION_CLASS_OF_TYPE:
        problems.append(f"{spec.name} is a primitive action's name")
    declared = {p.name for p in spec.parameters}
    for number, step in enumerate(spec.steps, 1):
        if step.action_type not in ADAPTER_OF_TYPE:
            problems.append(
                f"step {number}: {step.action_type!r} is not a registered primitive action "
                f"(registered: {', '.join(primitive_types())})"
            )
        unknown = referenced(step.parameters) - declared
        if unknown:
            problems.append(f"step {number}: undeclared parameter(s) {', '.join(sorted(unknown))}")
        if step.compensation == "undo" and step.action_type not in UNDOABLE:
            problems.append(
                f"step {number}: {step.action_type} cannot be undone by its adapter; "
                "declare compensation: none"
            )
    try:
        bind(spec, {p.name: p.default for p in spec.parameters if not p.required})
    except ToolSpecError as error:
        problems.append(f"a default does not fit its parameter: {error}")
    for parameter in spec.parameters:
        if parameter.choices and parameter.default not in (None, *parameter.choices):
            problems.append(f"{parameter.name}: the default is not one of its choices")
    if problems:
        return Check(stage="schema", ok=False, detail="; ".join(problems))
    return Check(
        stage="schema",
        ok=True,
        detail=f"{len(spec.steps)} primitive step(s), {len(spec.parameters)} typed parameter(s)",
    )


def _values(parameter: ToolParameter) -> list[Any]:
    if parameter.choices:
        return list(parameter.choices)
    if parameter.default is not None:
        return [parameter.default]
    return [_EXAMPLE[parameter.type]]


def first_arguments(spec: ToolSpec) -> dict[str, Any]:
    """One value per parameter: its first choice, its default or an example of its type
    (what the dry run and the staging trial run with)."""
    return {p.name: _values(p)[0] for p in spec.parameters}


def step_samples(spec: ToolSpec, step: ToolStep) -> tuple[list[dict[str, Any]], int]:
    """Every combination of the values the parameters this step references may take, the
    others at their first value, and how many there are: a step depends on nothing else,
    so checking each step over its own parameters covers every call of the tool. Only the
    first _MAX_SAMPLES are made; a caller refuses a step with more."""
    used = [p for p in spec.parameters if p.name in referenced(step.parameters)]
    count = math.prod(len(_values(p)) for p in used)
    base = first_arguments(spec)
    combos = itertools.islice(itertools.product(*(_values(p) for p in used)), _MAX_SAMPLES)
    names = [p.name for p in used]
    return [{**base, **dict(zip(names, combo, strict=True))} for combo in combos], count


def check_policy(
    spec: ToolSpec,
    policy: Policy,
    service: ServiceRecord | None,
    context: PolicyContext | None = None,
) -> Check:
    """context: the target's own (critical, mode) when it is registered; without one a step
    that would wait for approval there may read as allowed."""
    problems: list[str] = []
    # fixes name the tool as their action type: a name that reads as a forbidden action is
    # refused like one, whatever its steps do
    named = forbidden_reason(ActionSpec(action_type=spec.name, target="service"))
    if named is not None:
        problems.append(f"the name {spec.name!r} says {named}, which is forbidden")
    for number, step in enumerate(spec.steps, 1):
        for position in _DECISIVE:
            for name in sorted(referenced(step.parameters.get(position))):
                parameter = spec.parameter(name)
                if parameter is not None and parameter.type == "string" and not parameter.choices:
                    problems.append(
                        f"step {number}: free text {name!r} decides the {position}; "
                        "give the parameter its choices"
                    )
    target = service.name if service else "service"
    if context is None:
        context = PolicyContext(target_kind=target_kind(service) if service else None)
    needs_approval: set[str] = set()
    for number, step in enumerate(spec.steps, 1):
        samples, count = step_samples(spec, step)
        if count > _MAX_SAMPLES:
            problems.append(
                f"step {number} ({step.action_type}): {count} argument combinations, too many "
                f"to validate (at most {_MAX_SAMPLES}): give its parameters fewer choices"
            )
            continue
        for arguments in samples:
            try:
                bound = bind(spec, arguments)
            except ToolSpecError as error:
                problems.append(str(error))
                break
            action = ActionSpec(
                action_type=step.action_type,
                target=target if step.target == SERVICE else step.target,
                parameters=render(step.parameters, bound),
            )
            reason = forbidden_reason(action)
            if reason is not None:
                problems.append(f"step {number} ({action.action_type}): {reason} is forbidden")
                continue
            decision = evaluate(policy, action, context)
            if decision.verdict == "deny":
                problems.append(f"step {number} ({action.action_type}): {decision.reason}")
            elif decision.verdict == "needs_approval":
                needs_approval.add(f"step {number}")
    if problems:
        return Check(stage="policy", ok=False, detail="; ".join(dict.fromkeys(problems)))
    waits = (
        f"; {', '.join(sorted(needs_approval))} will wait for approval" if needs_approval else ""
    )
    return Check(stage="policy", ok=True, detail=f"every step is allowed by the policy{waits}")


def condition_refusal(condition: Condition, service: ServiceRecord) -> str | None:
    """Why a condition does not hold on the service's registry record (not `healthy`,
    which needs the service itself: the trial and the healing verification check it)."""
    if condition.kind == "config_key" and condition.value not in service.config_keys:
        return f"{service.name} declares no config key {condition.value!r}"
    if condition.kind == "replica_bounds" and service.replicas is None:
        return f"{service.name} declares no replica bounds"
    if condition.kind == "capability" and condition.value not in service.capabilities:
        return f"{service.name} has no capability {condition.value!r}"
    return None


def _model_refusal(action: ActionSpec) -> str | None:
    model = PARAMS.get(action.action_type)
    if model is None:
        return f"no adapter acts for action type {action.action_type!r}"
    try:
        model.model_validate(action.parameters)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        return f"parameter {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return None


async def dry_run(spec: ToolSpec, service: ServiceRecord | None) -> Check:
    """Run the steps with their defaults on the simulated adapter, then undo them in
    reverse. Against a registered service its bounds apply (config keys, replicas)."""
    if service is not None:
        failed = [
            f"pre-condition {c}: {why}"
            for c in spec.preconditions
            if (why := condition_refusal(c, service)) is not None
        ]
        if failed:
            return Check(stage="dry_run", ok=False, detail="; ".join(failed))
    adapter = SimulatedAdapter(default=1.0)  # the mechanics are checked, not luck
    try:
        actions = expand(spec, first_arguments(spec), service.name if service else "service")
    except ToolSpecError as error:
        return Check(stage="dry_run", ok=False, detail=str(error))
    done: list[tuple[ActionContext, dict[str, Any]]] = []
    for number, action in enumerate(actions, 1):
        why = (
            parameter_refusal(
                action.action_type,
                action.parameters,
                service,
                simulated=service.metadata.get("adapter") == "simulated",
            )
            if service is not None
            else _model_refusal(action)
        )
        if why is not None:
            undone = await _undo(adapter, done)
            return Check(
                stage="dry_run",
                ok=False,
                detail=f"step {number} ({action.action_type}) refused: {why}{undone}",
            )
        ctx = ActionContext(
            idempotency_key=f"dry-run:{spec.name}:{number}",
            workflow_id=f"dry-run:{spec.name}",
            step=str(number),
            action=action,
            service=service,
        )
        intent = await adapter.prepare(ctx)
        outcome: ActionOutcome = await adapter.apply(ctx, intent)
        if not outcome.success:
            undone = await _undo(adapter, done)
            return Check(
                stage="dry_run",
                ok=False,
                detail=f"step {number} failed: {outcome.detail}{undone}",
            )
        if spec.steps[number - 1].compensation == "undo":
            done.append((ctx, intent))
    undone = await _undo(adapter, done)
    where = f"against {service.name}'s registry record" if service else "with no service record"
    return Check(
        stage="dry_run",
        ok=True,
        detail=f"{len(actions)} step(s) ran on the simulated adapter {where}{undone}",
    )


async def _undo(adapter: SimulatedAdapter, done: list[tuple[ActionContext, dict[str, Any]]]) -> str:
    if not done:
        return ""
    results = [await adapter.compensate(ctx, intent) for ctx, intent in reversed(done)]
    failed = [r.detail for r in results if not r.success]
    if failed:
        return f"; undo failed: {'; '.join(failed)}"
    return f"; {len(results)} undone in reverse"


def rendered_steps(spec: ToolSpec, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps as a person reads them with these arguments (for `aiops tools show`)."""
    bound = bind(spec, arguments)
    return [render(step.parameters, bound) for step in spec.steps]
