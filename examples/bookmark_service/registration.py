"""The service's entry in aiops's registry: how aiops finds, checks, restarts and tunes it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from aiops.registry.models import ConfigKey, ReplicaBounds, ServiceDefinition
from examples.bookmark_service.options import TOKEN_ENV, ServiceOptions

# `python -m examples.bookmark_service` resolves from here: the repository root
REPO_ROOT: Final = Path(__file__).resolve().parents[2]

ADMIN_ENDPOINTS: Final = {
    "config_update": "/admin/config",
    "cache_clear": "/admin/cache/clear",
    "scale": "/admin/scale",
    "log_analysis": "/admin/logs",
}
CAPABILITIES: Final = ["crud", "search", "import"]
FAULTS: Final = ["slow_imports", "memory_leak", "bad_config", "disk_full", "crash"]
# What aiops may change, and within what: anything else is refused before it is sent. The
# page size has no upper bound here on purpose: the service's own cap (1000) refuses it.
CONFIG_KEYS: Final = {
    "db_pool_size": ConfigKey(type="integer", min=1, max=64),
    "import_deadline_s": ConfigKey(type="number", min=1, max=600),
    "page_size": ConfigKey(type="integer", min=1),
}
REPLICAS: Final = ReplicaBounds(min=1, max=16)


def restart_argv(options: ServiceOptions, python: str | None = None) -> list[str]:
    """The argv that starts the service with these options (data_dir made absolute)."""
    absolute = options.model_copy(update={"data_dir": options.data_dir.resolve()})
    return [python or sys.executable, "-m", "examples.bookmark_service", *absolute.to_argv()]


def service_definition(
    options: ServiceOptions,
    *,
    python: str | None = None,
    owner: str = "bookmarks-team",
    critical: bool = False,
) -> ServiceDefinition:
    """Register this with `ServiceRegistry.register`; the process adapter restarts the
    service from restart_argv in working_dir, the http adapter calls admin_endpoints with
    the admin token as its bearer credential. The token reaches a restarted process through
    env (the registry lists env names only), not through restart_argv."""
    token = options.admin_token
    return ServiceDefinition(
        name=options.name,
        endpoint=options.endpoint,
        capabilities=list(CAPABILITIES),
        health_check="/health",
        restart_argv=restart_argv(options, python),
        working_dir=str(REPO_ROOT),
        admin_endpoints=dict(ADMIN_ENDPOINTS),
        critical=critical,
        owner=owner,
        env={TOKEN_ENV: token} if token else {},
        credentials=SecretStr(token) if token else None,
        config_keys=dict(CONFIG_KEYS),
        replicas=REPLICAS,
        metadata={
            "example": "examples/bookmark_service",
            "events_stream": options.stream,
            "faults": list(FAULTS),
            "faults_endpoint": "/admin/faults",
        },
    )


def definition_json(definition: ServiceDefinition) -> str:
    """The definition as JSON that `aiops services register FILE` accepts, credential
    included (pydantic would print it masked, and a masked token registers wrong)."""
    data = definition.model_dump(mode="json")
    if definition.credentials is not None:
        data["credentials"] = definition.credentials.get_secret_value()
    return json.dumps(data, indent=2)
