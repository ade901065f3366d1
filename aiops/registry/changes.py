"""Registry changes and their audit rows: who changed which service, and what changed.

Shared by the CLI and the API, so a change audits the same whichever way it came in.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from aiops.audit import AuditEntry, AuditLog
from aiops.modes.store import ModeStore
from aiops.registry.models import ServiceDefinition, ServiceRecord
from aiops.registry.store import ServiceRegistry, UnknownService

# what a registry audit row compares field by field: every field of a definition (so new
# ones are audited too) but env and credentials, which are reported without their values,
# and the mode, which the mode store audits itself
_UNAUDITED_VALUES = frozenset({"name", "env", "credentials", "mode"})


def registry_changes(
    previous: ServiceDefinition | None, current: ServiceDefinition
) -> dict[str, Any]:
    """What a registration changed, for the audit log: field old/new values, env keys
    added/removed/changed and whether the credentials changed; never an env value or a
    credential."""
    fields = set(ServiceDefinition.model_fields) - _UNAUDITED_VALUES
    new = current.model_dump(mode="json", include=fields)
    old = previous.model_dump(mode="json", include=fields) if previous else {}
    changed: dict[str, Any] = {}
    for name, value in new.items():
        before = old.get(name)
        if before == value or (previous is None and value in (None, [], {}, False)):
            continue
        changed[name] = {"old": before, "new": value}
    old_env = previous.env if previous else {}
    new_env = current.env
    env = {
        "added": sorted(set(new_env) - set(old_env)),
        "removed": sorted(set(old_env) - set(new_env)),
        "changed": sorted(k for k in set(new_env) & set(old_env) if new_env[k] != old_env[k]),
    }
    details: dict[str, Any] = {"created": previous is None, "changes": changed}
    if any(env.values()):
        details["env"] = {k: v for k, v in env.items() if v}
    old_secret = (
        previous.credentials.get_secret_value() if previous and previous.credentials else None
    )
    new_secret = current.credentials.get_secret_value() if current.credentials else None
    if old_secret != new_secret:
        details["credentials"] = (
            "added" if old_secret is None else "removed" if new_secret is None else "changed"
        )
    return details


async def register_audited(
    pool: asyncpg.Pool,
    registry: ServiceRegistry,
    definition: ServiceDefinition,
    actor: str,
    via: str,
) -> tuple[ServiceRecord, dict[str, Any]]:
    """Register (create or replace) and write the audit row saying who changed what."""
    try:
        previous: ServiceRecord | None = await registry.get(definition.name)
    except UnknownService:
        previous = None
    record = await registry.register(definition)
    details = {**registry_changes(previous, record), "via": via}
    await AuditLog(pool).append(
        AuditEntry(
            actor=actor,
            action="registry",
            target=record.name,
            decision="registered",
            details=details,
        )
    )
    if definition.mode is not None:
        # the operating_modes row is the one place a mode lives (audited by the store)
        await ModeStore(pool).set(
            record.name, definition.mode, actor, "set by the service definition", via
        )
    return record.model_copy(update={"mode": definition.mode}), details


async def deregister_audited(
    pool: asyncpg.Pool, registry: ServiceRegistry, name: str, actor: str, via: str
) -> bool:
    """Remove a service and audit what was removed; False when it was not registered."""
    try:
        previous = await registry.get(name)
    except UnknownService:
        return False
    if not await registry.deregister(name):
        return False
    await AuditLog(pool).append(
        AuditEntry(
            actor=actor,
            action="registry",
            target=name,
            decision="deregistered",
            details={
                "via": via,
                "endpoint": previous.endpoint,
                "env_keys": sorted(previous.env),
                "had_credentials": previous.credentials is not None,
            },
        )
    )
    return True
