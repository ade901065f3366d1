"""Operating modes and silences over HTTP: read them (viewer), set a mode (admin), add or
expire a silence (operator). Every change is audited with the caller's identity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from aiops.modes import GLOBAL, Mode, ModeStore
from aiops.silences import SilenceStore
from aiops.silences.store import SilenceError, parse_duration, parse_matchers
from workers.api.auth import Admin, Deps, Operator, Viewer

router = APIRouter(tags=["adoption"])


class ModeChange(BaseModel):
    mode: Mode
    reason: str = ""


class SilenceIn(BaseModel):
    service: str | None = None
    match: list[str] = Field(default_factory=list, description="e.g. event_type=ServiceError")
    duration: str = Field(alias="for", description="how long: 30m, 2h, 1d")
    reason: str = Field(min_length=1)


@router.get("/modes")
async def modes(b: Deps, _: Viewer) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json") for s in await ModeStore(b.pool).all()]


@router.put("/modes/{scope}")
async def set_mode(scope: str, change: ModeChange, b: Deps, identity: Admin) -> dict[str, Any]:
    """scope: a service's name, or * for every service without a mode of its own."""
    setting = await ModeStore(b.pool).set(scope, change.mode, identity.sub, change.reason, "api")
    return setting.model_dump(mode="json")


@router.delete("/modes/{scope}")
async def clear_mode(scope: str, b: Deps, identity: Admin) -> dict[str, str]:
    if not await ModeStore(b.pool).clear(scope, identity.sub, "api"):
        raise HTTPException(404, f"no mode is set for {scope if scope != GLOBAL else 'all'}")
    return {"cleared": scope}


@router.get("/silences")
async def silences(b: Deps, _: Viewer) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json") for s in await SilenceStore(b.pool).active()]


@router.post("/silences", status_code=201)
async def add_silence(body: SilenceIn, b: Deps, identity: Operator) -> dict[str, Any]:
    try:
        silence = await SilenceStore(b.pool).add(
            service=body.service,
            matchers=parse_matchers(body.match),
            duration=parse_duration(body.duration),
            reason=body.reason,
            created_by=identity.sub,
            via="api",
        )
    except SilenceError as error:
        raise HTTPException(422, str(error)) from None
    return silence.model_dump(mode="json")


@router.delete("/silences/{silence_id}")
async def expire_silence(silence_id: str, b: Deps, identity: Operator) -> dict[str, Any]:
    try:
        silence = await SilenceStore(b.pool).expire(silence_id, identity.sub, "api")
    except SilenceError as error:
        raise HTTPException(404, str(error)) from None
    return silence.model_dump(mode="json")
