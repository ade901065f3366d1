from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from aiops.modes.models import Mode

# Admin endpoints are named by the action class they serve.
ADMIN_ACTIONS = ("config_update", "cache_clear", "scale", "log_analysis")
ConfigValue = bool | int | float | str


class ConfigKey(BaseModel):
    """One config key aiops may set on a service, and the values it may set it to."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["integer", "number", "string", "boolean"]
    min: float | None = None
    max: float | None = None
    choices: list[ConfigValue] | None = None
    max_length: int = Field(default=256, ge=1, le=4096, description="for strings")

    def refusal(self, value: object) -> str | None:
        """Why this value may not be set, or None."""
        kinds: dict[str, tuple[type, ...]] = {
            "integer": (int,),
            "number": (int, float),
            "string": (str,),
            "boolean": (bool,),
        }
        # bool is an int in Python; True is no pool size
        if isinstance(value, bool) != (self.type == "boolean") or not isinstance(
            value, kinds[self.type]
        ):
            return f"expects a {self.type}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {self.choices}, got {value!r}"
        if isinstance(value, str) and len(value) > self.max_length:
            return f"is at most {self.max_length} characters"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                return f"must be a finite number, got {value}"  # NaN passes every bound
            if self.min is not None and value < self.min:
                return f"must be at least {self.min:g}, got {value}"
            if self.max is not None and value > self.max:
                return f"must be at most {self.max:g}, got {value}"
        return None


class ReplicaBounds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min: int = Field(default=1, ge=0)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"replicas.min {self.min} is above replicas.max {self.max}")
        return self


class ServiceDefinition(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    endpoint: str = Field(description="base URL, e.g. http://127.0.0.1:8002")
    capabilities: list[str] = Field(default_factory=list)
    health_check: str | None = Field(default="/health", description="path under endpoint")
    restart_argv: list[str] | None = Field(
        default=None, description="argv that starts the process; never a shell string"
    )
    working_dir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    admin_endpoints: dict[str, str] = Field(
        default_factory=dict, description="action class -> path, e.g. config_update: /admin/config"
    )
    critical: bool = False
    owner: str | None = None
    credentials: SecretStr | None = Field(
        default=None, description="bearer token for the admin endpoints; stored encrypted"
    )
    config_keys: dict[str, ConfigKey] = Field(
        default_factory=dict,
        description="the config keys config_update may set, with their bounds; none: none",
    )
    replicas: ReplicaBounds | None = Field(
        default=None, description="the replica counts scale may set; unset: scale is refused"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    mode: Mode | None = Field(
        default=None,
        description="operating mode set at registration (as `aiops mode set --service`): "
        "act, approve-all or shadow; unset leaves the service's mode as it is",
    )

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "redis://", "rediss://")):
            raise ValueError("endpoint must be an http(s):// or redis(s):// URL")
        return value.rstrip("/")

    @field_validator("admin_endpoints")
    @classmethod
    def _known_actions(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - set(ADMIN_ACTIONS)
        if unknown:
            raise ValueError(f"unknown admin actions {sorted(unknown)}; known: {ADMIN_ACTIONS}")
        return value

    @field_validator("restart_argv")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not part for part in value)):
            raise ValueError("restart_argv must be a non-empty list of non-empty arguments")
        return value

    def url(self, path: str) -> str:
        return self.endpoint + (path if path.startswith("/") else "/" + path)


class ProcessInfo(BaseModel):
    pid: int
    create_time: float
    started_at: datetime


class ServiceRecord(ServiceDefinition):
    healthy: bool | None = None
    last_checked_at: datetime | None = None
    last_latency_ms: float | None = None
    registered_at: datetime
    process: ProcessInfo | None = None
