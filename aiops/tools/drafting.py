"""Drafting a tool with a chat model: what a fix asks for, the primitives there are, and the
target's bounds go in (masked); one YAML specification comes back and is parsed like any
other. The model proposes; validation and an admin decide."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from aiops.actions.params import PARAMS
from aiops.diagnosis.chat import ChatError, ChatModel
from aiops.privacy import mask, mask_json
from aiops.registry.models import ServiceRecord
from aiops.tools.models import UNDOABLE, ToolDraft, ToolRequest, ToolSpec
from aiops.tools.spec import ToolSpecError, parse_spec, reasons

_SYSTEM = (
    "You design small operations tools for aiops. A tool is a named sequence of primitive "
    "actions. Answer with ONE YAML document and nothing else, with the keys: name, "
    "description, parameters (each: name, type one of string|integer|number|boolean, "
    "description, default, choices), steps (each: action_type, target '{service}', "
    "parameters where ${name} stands for a tool parameter, compensation undo|none, note), "
    "preconditions and postconditions (each: kind one of registered|config_key|"
    "replica_bounds|capability|healthy, value). Use only the primitive action types listed. "
    "Never delete data, change credentials, the network or the system."
)
_SECRET = "<SECRET>"
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*?)\n```\s*$", re.DOTALL)


def _type_name(annotation: object) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _primitives() -> str:
    lines = []
    for action_type, model in sorted(PARAMS.items()):
        fields = ", ".join(
            f"{name}: {_type_name(field.annotation)}" for name, field in model.model_fields.items()
        )
        undo = "can be undone" if action_type in UNDOABLE else "cannot be undone"
        lines.append(f"- {action_type}({fields or 'no parameters'}); {undo}")
    return "\n".join(lines)


def _secret_named(key: str) -> bool:
    return bool(mask_json({key: 0})[key] != 0)


def _masked(value: Any) -> Any:
    """Every text masked, values under secret-named keys hidden whole, and so is the value
    of a key/value pair whose key names a secret ({key: db_password, value: hunter2})."""
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if not isinstance(value, dict):
        return mask_json(value)
    key = value.get("key")
    pair = isinstance(key, str) and _secret_named(key)
    return {
        k: _SECRET if _secret_named(str(k)) or (pair and k == "value") else _masked(v)
        for k, v in value.items()
    }


def prompt(request: ToolRequest, service: ServiceRecord | None) -> str:
    lines = [
        f"Build the tool {request.action_type!r}.",
        f"A known fix, {mask(request.solution_description)!r}, needs it for the problem "
        f"{mask(request.problem_description)!r}.",
        # a fix's values may be a connection string or a token (config_update.value)
        f"The fix calls it with the parameters "
        f"{json.dumps(_masked(request.parameters), sort_keys=True)}",
        "Primitive action types:",
        _primitives(),
    ]
    if service is not None:
        lines.append(
            f"The service {service.name} declares config keys "
            f"{sorted(service.config_keys) or 'none'}, replica bounds "
            f"{service.replicas.model_dump() if service.replicas else 'none'} and capabilities "
            f"{service.capabilities or 'none'}."
        )
    return "\n".join(lines)


def yaml_of(answer: str) -> str:
    fenced = _FENCE.match(answer.strip())
    return fenced.group(1) if fenced else answer


class LlmDrafter:
    def __init__(self, chat: ChatModel) -> None:
        self._chat = chat

    @property
    def model(self) -> str:
        return self._chat.model

    async def draft(self, request: ToolRequest, service: ServiceRecord | None) -> ToolDraft:
        """The model's specification, named for the action the fix asks for; ToolSpecError
        when there is no usable answer."""
        try:
            answer = await self._chat.complete(_SYSTEM, prompt(request, service), max_tokens=1200)
        except ChatError as error:
            raise ToolSpecError(f"the model {self.model} gave no draft: {error}") from None
        drafted = parse_spec(yaml_of(answer))
        try:
            spec = ToolSpec.model_validate({**drafted.model_dump(), "name": request.action_type})
        except ValidationError as error:
            why = reasons(error)
            raise ToolSpecError(f"cannot name a tool {request.action_type!r}: {why}") from None
        return ToolDraft(
            spec=spec,
            origin="llm",
            problem_id=request.problem_id,
            service=request.service,
            why=f"drafted by {self.model} for the fix {request.solution_description!r}",
        )
