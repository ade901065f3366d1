"""A tool: a named, parameterised composite of registered primitive actions.

The specification is what a person reads and approves (YAML), so it says everything the
tool will do: its typed parameters, its steps in order with their parameter templates,
how each step is undone, and the conditions it needs before and promises after.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ToolStatus = Literal["proposed", "approved", "retired", "refused"]
ToolOrigin = Literal["mined", "llm", "manual"]
ParamType = Literal["string", "integer", "number", "boolean"]

# what the real adapters can undo (aiops/actions: http, process, redis); the others act
# for good and a tool must say so instead of promising an undo that will not happen
UNDOABLE: frozenset[str] = frozenset({"config_update", "scale", "start", "stop"})
SERVICE = "{service}"
NAME_PATTERN = r"^[a-z][a-z0-9_]{2,62}$"
_TEMPLATE = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")
# a step's parameters come from an LLM or from mined runs: untrusted, so bounded. Real
# adapters take a flat mapping of a few scalars; these leave room and stop a small answer
# from expanding into something validation must walk for minutes
MAX_PARAMETER_DEPTH = 4
MAX_PARAMETER_NODES = 256
MAX_TEXT = 4096
MAX_CHOICES = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolParameter(_Strict):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    type: ParamType = "string"
    description: str = ""
    default: Any = None
    choices: list[Any] | None = Field(
        default=None,
        max_length=MAX_CHOICES,
        description="the only values allowed; required for free text in a command",
    )

    @field_validator("default", "choices")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        bounded_refusal(value, "the value")
        return value

    @property
    def required(self) -> bool:
        return self.default is None


class Condition(_Strict):
    """What must hold on the target service: before the first step (pre) or after the last
    (post). Pre-conditions are checked at planning time and in the dry run; post-conditions
    in the staging trial (and `healthy` by the healing workflow's own verification)."""

    kind: Literal["registered", "config_key", "replica_bounds", "capability", "healthy"]
    value: str | None = Field(default=None, description="the key or capability it names")

    @model_validator(mode="after")
    def _needs_value(self) -> Condition:
        if self.kind in ("config_key", "capability") and not self.value:
            raise ValueError(f"a {self.kind} condition names its {self.kind.replace('_', ' ')}")
        return self

    def __str__(self) -> str:
        return self.kind + (f" {self.value}" if self.value else "")


class ToolStep(_Strict):
    action_type: str = Field(min_length=1)
    target: str = Field(default=SERVICE, description="{service}: the incident's service")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="values; ${name} is replaced by a tool parameter"
    )
    compensation: Literal["undo", "none"] = Field(
        default="undo", description="undo: the adapter restores what the step changed"
    )
    note: str = ""

    @field_validator("parameters")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        bounded_refusal(value, "a step's parameters")
        return value


def bounded_refusal(value: Any, what: str) -> None:
    """Raise ValueError when a value nests deeper than MAX_PARAMETER_DEPTH, holds more than
    MAX_PARAMETER_NODES values or a text longer than MAX_TEXT; the walk stops at the first
    excess, so a shared or huge structure costs no more than the bound."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_PARAMETER_NODES:
            raise ValueError(f"{what} hold more than {MAX_PARAMETER_NODES} values")
        if isinstance(item, str) and len(item) > MAX_TEXT:
            raise ValueError(f"{what}: a text is longer than {MAX_TEXT} characters")
        children: list[Any] = []
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            children = list(item)
        if children and depth >= MAX_PARAMETER_DEPTH:
            raise ValueError(f"{what} nest deeper than {MAX_PARAMETER_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


class ToolSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1)
    parameters: list[ToolParameter] = Field(default_factory=list)
    steps: list[ToolStep] = Field(min_length=1, max_length=20)
    preconditions: list[Condition] = Field(default_factory=list)
    postconditions: list[Condition] = Field(default_factory=list)

    @field_validator("parameters")
    @classmethod
    def _unique(cls, value: list[ToolParameter]) -> list[ToolParameter]:
        names = [p.name for p in value]
        if len(names) != len(set(names)):
            raise ValueError("parameter names must be unique")
        return value

    def parameter(self, name: str) -> ToolParameter | None:
        return next((p for p in self.parameters if p.name == name), None)


def referenced(value: Any) -> set[str]:
    """The ${name} parameters a template value uses, at any depth."""
    if isinstance(value, str):
        return set(_TEMPLATE.findall(value))
    if isinstance(value, dict):
        return set().union(*(referenced(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(referenced(v) for v in value)) if value else set()
    return set()


def render(value: Any, arguments: dict[str, Any]) -> Any:
    """A template with its parameters filled in: a value that is exactly ${name} takes the
    argument's own type (an integer stays an integer); inside text it is written out."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value)
        if whole is not None:
            return arguments[whole.group(1)]
        return _TEMPLATE.sub(lambda m: str(arguments[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: render(v, arguments) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, arguments) for v in value]
    return value


class Check(BaseModel):
    """One validation stage's verdict."""

    stage: Literal["schema", "policy", "dry_run", "staging_trial"]
    ok: bool
    detail: str
    skipped: bool = False
    needs_a_person: bool = Field(
        default=False, description="the staging trial waits for an admin's `aiops tools trial`"
    )


class ValidationReport(BaseModel):
    checks: list[Check] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def refusal(self) -> str | None:
        failed = next((c for c in self.checks if not c.ok), None)
        return f"{failed.stage}: {failed.detail}" if failed else None

    @property
    def needs_a_person(self) -> bool:
        """Only an admin's trial can take it further: a redraft of the same would not."""
        return any(c.needs_a_person for c in self.checks)


class ToolRecord(BaseModel):
    name: str
    version: int
    status: ToolStatus
    origin: ToolOrigin
    spec: ToolSpec
    spec_yaml: str
    problem_id: str | None = None
    service: str | None = None
    solution_id: str | None = None
    signature: str | None = None
    validation: ValidationReport = Field(default_factory=ValidationReport)
    created_by: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ToolDraft(BaseModel):
    """A specification and where it came from, before validation."""

    spec: ToolSpec
    origin: ToolOrigin
    problem_id: str | None = None
    service: str | None = None
    signature: str | None = Field(
        default=None, description="the mined sequence it came from: drafted once"
    )
    why: str = ""


class ToolRequest(BaseModel):
    """Trigger 1: a known fix needs an action type that neither an adapter nor a tool offers."""

    action_type: str
    problem_id: str | None = None
    problem_description: str = ""
    solution_id: str | None = None
    solution_description: str = ""
    service: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    seen_count: int = 1
