"""Each action type's parameters as a typed model, checked against the service's bounds.

A parameter that the type does not know is refused, not ignored: `adapter` in particular
chose the adapter once, and an action's parameters must never pick what acts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiops.registry.models import ConfigValue, ServiceRecord


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ProcessParams(_Params):
    graceful: bool = True


class ConfigUpdateParams(_Params):
    key: str = Field(min_length=1, max_length=128)
    value: ConfigValue


class ScaleParams(_Params):
    replicas: int = Field(ge=0)


class NoParams(_Params):
    pass


class ExecuteParams(_Params):
    command: str = Field(min_length=1, max_length=256)


class SimulatedParams(_Params):
    """What the simulated adapter reads, on top of the action type's own parameters."""

    success_probability: float | None = Field(default=None, ge=0, le=1)
    delay_s: float | None = Field(default=None, ge=0, le=60)


PARAMS: dict[str, type[_Params]] = {
    "restart": ProcessParams,
    "start": ProcessParams,
    "stop": ProcessParams,
    "config_update": ConfigUpdateParams,
    "scale": ScaleParams,
    "cache_clear": NoParams,
    "log_analysis": NoParams,
    "execute": ExecuteParams,
}
_SIMULATED = frozenset(SimulatedParams.model_fields)


def _first(error: ValidationError, action_type: str) -> str:
    item = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in item["loc"]) or "parameters"
    if item["type"] == "extra_forbidden":
        hint = " (the action type decides the adapter)" if where == "adapter" else ""
        return f"{where!r} is not a parameter of {action_type}{hint}"
    return f"parameter {where}: {item['msg']}"


def parameter_refusal(
    action_type: str, parameters: dict[str, Any], service: ServiceRecord, simulated: bool
) -> str | None:
    """Why these parameters may not be used on this service, or None."""
    model = PARAMS.get(action_type)
    if model is None:
        return f"no adapter acts for action type {action_type!r}"
    own = dict(parameters)
    if simulated:
        extra = {k: own.pop(k) for k in list(own) if k in _SIMULATED}
        try:
            SimulatedParams.model_validate(extra)
        except ValidationError as error:
            return _first(error, action_type)
    try:
        params = model.model_validate(own)
    except ValidationError as error:
        return _first(error, action_type)
    if isinstance(params, ConfigUpdateParams):
        declared = service.config_keys.get(params.key)
        if declared is None:
            known = ", ".join(sorted(service.config_keys)) or "none"
            return (
                f"{service.name} declares no config key {params.key!r} (declared: {known}; "
                "add it to the service's config_keys)"
            )
        why = declared.refusal(params.value)
        if why is not None:
            return f"{service.name} config {params.key} {why}"
    if isinstance(params, ScaleParams):
        bounds = service.replicas
        if bounds is None:
            return f"{service.name} declares no replica bounds (replicas: {{min, max}})"
        if not bounds.min <= params.replicas <= bounds.max:
            return (
                f"{service.name} replicas must be within {bounds.min}..{bounds.max}, "
                f"got {params.replicas}"
            )
    return None
