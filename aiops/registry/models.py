from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator

# Admin endpoints are named by the action class they serve.
ADMIN_ACTIONS = ("config_update", "cache_clear", "scale", "log_analysis")


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
    metadata: dict[str, Any] = Field(default_factory=dict)

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
