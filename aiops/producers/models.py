"""A producer: one publisher of events, its own stream and the services it may speak for."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aiops.errors import AiopsError

NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# a registry service name (aiops/registry/models.py ServiceDefinition.name)
SERVICE_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# events:monitor, events:dead, events:api, events:replay and events:aiops* are aiops' own
RESERVED_NAMES: Final = frozenset({"monitor", "dead", "api", "aiops", "replay"})
RESERVED_PREFIX: Final = "aiops"
STREAM_PREFIX: Final = "events:"  # aiops.events.mesh.STREAM_PREFIX
ACL_USER_PREFIX: Final = "producer-"


class ProducerError(AiopsError):
    """A producer that cannot be added, changed or removed; the message says why."""

    exit_code = 2


def stream_of(name: str) -> str:
    return STREAM_PREFIX + name


def acl_user_of(name: str) -> str:
    return ACL_USER_PREFIX + name


def check_name(name: str) -> str:
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise ValueError(
            f"producer name {name!r} must be lower-case letters, digits, _ and - "
            "(at most 63), starting with a letter or digit"
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX):
        raise ValueError(
            f"producer name {name!r} is reserved: events:{name} is one of aiops' own streams"
        )
    return name


def parse_services(text: str) -> list[str]:
    """`--services a,b`: comma-separated service names, duplicates dropped, order kept."""
    return list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))


class Producer(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    services: list[str] = Field(min_length=1)
    stream: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_stream(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("stream") and isinstance(data.get("name"), str):
            return {**data, "stream": stream_of(data["name"])}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("services")
    @classmethod
    def _services(cls, value: list[str]) -> list[str]:
        for service in value:
            if SERVICE_PATTERN.fullmatch(service) is None:
                raise ValueError(
                    f"service {service!r} must be letters, digits, _ . - (at most 100), "
                    "starting with a letter or digit"
                )
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _own_stream(self) -> Producer:
        # the Redis user may write exactly this key; a different stream would be a lie
        if self.stream != stream_of(self.name):
            raise ValueError(f"producer {self.name}'s stream is {stream_of(self.name)}")
        return self

    @property
    def acl_user(self) -> str:
        return acl_user_of(self.name)
