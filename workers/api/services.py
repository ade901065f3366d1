"""The service registry: list (viewer), register and deregister (admin), every change
audited with who made it and what changed. Credentials and env values never leave it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import ValidationError

from aiops.monitor.models import ProbeOverrides
from aiops.registry import ServiceDefinition, ServiceRecord
from aiops.registry.changes import deregister_audited, register_audited
from workers.api.auth import Admin, Deps, Viewer

router = APIRouter(tags=["services"])


def service_row(record: ServiceRecord) -> dict[str, Any]:
    """A service as the API shows it: env keys only, whether it has credentials."""
    row = record.model_dump(mode="json", exclude={"credentials", "env"})
    row["env_keys"] = sorted(record.env)
    row["has_credentials"] = record.credentials is not None
    return row


@router.get("/services")
async def services(b: Deps, _: Viewer, capability: str | None = None) -> list[dict[str, Any]]:
    found = await b.registry.discover(capabilities=[capability] if capability else None)
    return [service_row(s) for s in found]


@router.post("/services", status_code=201)
async def register(definition: ServiceDefinition, b: Deps, identity: Admin) -> dict[str, Any]:
    """Create or replace a service; the response and the audit row say what changed."""
    try:
        ProbeOverrides.model_validate(
            {k: v for k, v in definition.metadata.items() if k.startswith("probe_")}
        )
    except ValidationError as error:
        reasons = "; ".join(
            f"metadata.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        raise HTTPException(422, reasons) from None
    record, details = await register_audited(b.pool, b.registry, definition, identity.sub, "api")
    return {"service": service_row(record), "audit": details}


@router.delete("/services/{name}")
async def deregister(name: str, b: Deps, identity: Admin) -> dict[str, str]:
    if not await deregister_audited(b.pool, b.registry, name, identity.sub, "api"):
        raise HTTPException(404, f"service {name!r} is not registered")
    return {"deregistered": name}
