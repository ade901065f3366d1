"""The YAML form of a tool, its arguments as a typed model, and its expansion into steps."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from aiops.errors import AiopsError
from aiops.policy.models import ActionSpec
from aiops.tools.models import SERVICE, ToolParameter, ToolSpec, render

_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
# a specification a person reads; an LLM's answer is at most a few thousand characters
MAX_SPEC_CHARS = 64_000


class ToolSpecError(AiopsError):
    exit_code = 2


def reasons(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'tool'}: {e['msg']}"
        for e in error.errors(include_url=False)
    )


class _NoAliases(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: a spec says each value where it is used, and
    aliases let a few hundred characters stand for a structure of billions of nodes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        what = (
            "aliases (*name)"
            if isinstance(event, yaml.AliasEvent)
            else "anchors (&name)"
            if getattr(event, "anchor", None) is not None
            else None
        )
        if what is not None:
            raise yaml.composer.ComposerError(
                None, None, f"{what} are not allowed in a tool", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_spec(text: str) -> ToolSpec:
    if len(text) > MAX_SPEC_CHARS:
        raise ToolSpecError(
            f"the tool specification is {len(text)} characters; at most {MAX_SPEC_CHARS}"
        )
    try:
        data = yaml.load(text, Loader=_NoAliases)
    except yaml.YAMLError as error:
        raise ToolSpecError(f"the tool specification is not YAML: {error}") from None
    if isinstance(data, dict) and isinstance(data.get("tool"), dict):
        data = data["tool"]
    if not isinstance(data, dict):
        raise ToolSpecError("the tool specification is a mapping with name, description, steps")
    try:
        return ToolSpec.model_validate(data)
    except ValidationError as error:
        raise ToolSpecError(f"the tool specification is invalid: {reasons(error)}") from None


def dump_spec(spec: ToolSpec) -> str:
    return yaml.safe_dump(
        spec.model_dump(mode="json", exclude_defaults=False), sort_keys=False, width=100
    )


def _field(parameter: ToolParameter) -> tuple[Any, Any]:
    kind: Any = _TYPES[parameter.type]
    if parameter.choices:
        kind = Literal[tuple(parameter.choices)]
    default = ... if parameter.required else parameter.default
    return kind, Field(default=default, description=parameter.description)


def arguments_model(spec: ToolSpec) -> type[BaseModel]:
    """The tool's parameters as a pydantic model: types, choices and defaults enforced, and
    nothing else accepted (an argument cannot add a parameter to a step)."""
    fields: dict[str, Any] = {p.name: _field(p) for p in spec.parameters}
    return create_model(
        f"{spec.name}_arguments",
        __config__=ConfigDict(extra="forbid", strict=True),
        **fields,
    )


def bind(spec: ToolSpec, given: dict[str, Any]) -> dict[str, Any]:
    """Checked arguments with the defaults filled in; ToolSpecError says what is wrong."""
    try:
        return arguments_model(spec).model_validate(given).model_dump()
    except ValidationError as error:
        raise ToolSpecError(f"arguments of tool {spec.name}: {reasons(error)}") from None


def expand(
    spec: ToolSpec, given: dict[str, Any], target: str = SERVICE, first_order: int = 1
) -> list[ActionSpec]:
    """The tool's steps as primitive actions, in order: what a plan runs, each step through
    the guard, the policy and the saga like any other action. `target` replaces {service}."""
    arguments = bind(spec, given)
    return [
        ActionSpec(
            action_type=step.action_type,
            target=target if step.target == SERVICE else step.target,
            parameters=render(step.parameters, arguments),
            order=first_order + index,
        )
        for index, step in enumerate(spec.steps)
    ]
