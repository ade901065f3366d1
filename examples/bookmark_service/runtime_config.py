"""The runtime configuration: changed through /admin/config, kept in <data-dir>/config.json.

It is a file so that a bad value survives a restart, as a bad deploy of a config file
would: restarting does not heal bad_config, setting the value back does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiops.errors import AiopsError


class InvalidConfig(AiopsError):
    """A config update that names an unknown key or a value out of range."""


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # 0 is allowed on purpose: a value of the right type that breaks the service, which is
    # what the bad_config fault writes (and what an undo may need to write back).
    db_pool_size: int = Field(
        default=4, ge=0, le=64, description="SQLite connections shared by requests"
    )
    replicas: int = Field(default=2, ge=1, le=64, description="import workers: items at once")
    import_deadline_s: float = Field(
        default=2.0, gt=0, le=600, description="an import not done by then is abandoned (504)"
    )
    page_size: int = Field(default=50, ge=1, le=1000, description="bookmarks per page")


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'config'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )


class ConfigStore:
    """The current RuntimeConfig, written atomically to disk on every change."""

    def __init__(self, path: Path, initial: RuntimeConfig) -> None:
        self.path = path
        if path.exists():
            try:
                self._current = RuntimeConfig.model_validate_json(path.read_text())
            except ValidationError as error:
                raise InvalidConfig(f"{path}: {_describe(error)}") from None
        else:
            self._current = initial
            self._write(initial)

    @property
    def current(self) -> RuntimeConfig:
        return self._current

    def updated(self, key: str, value: Any) -> RuntimeConfig:
        """The config with key set to value, validated; not yet stored."""
        if key not in RuntimeConfig.model_fields:
            known = ", ".join(RuntimeConfig.model_fields)
            raise InvalidConfig(f"unknown config key {key!r}; known keys: {known}")
        try:
            return RuntimeConfig.model_validate({**self._current.model_dump(), key: value})
        except ValidationError as error:
            raise InvalidConfig(_describe(error)) from None

    def store(self, config: RuntimeConfig) -> None:
        self._write(config)
        self._current = config

    def _write(self, config: RuntimeConfig) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(config.model_dump(), indent=2) + "\n")
        os.replace(partial, self.path)
