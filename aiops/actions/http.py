"""Call a service's admin endpoints declared in the registry; capture the old value first.

The admin protocol: GET <path> returns the current state as a JSON object; POST <path> with a
JSON body changes it. config_update posts {"key", "value"}; scale posts {"replicas"};
cache_clear posts {}; log_analysis only reads.
"""

from __future__ import annotations

from typing import Any

import httpx

from aiops.actions.base import ActionContext, ActionError, ActionOutcome
from aiops.registry.models import ServiceRecord

_NO_UNDO = {
    "cache_clear": "a cleared cache refills itself; nothing to roll back",
    "log_analysis": "read-only",
}


class HttpAdapter:
    name = "http"

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout = timeout_s

    def _target(self, ctx: ActionContext) -> tuple[ServiceRecord, str]:
        service = ctx.service
        if service is None:
            raise ActionError(f"{ctx.action.action_type} needs a registered service")
        path = service.admin_endpoints.get(ctx.action.action_type)
        if path is None:
            raise ActionError(
                f"service {service.name} declares no admin endpoint for {ctx.action.action_type}"
            )
        return service, service.url(path)

    def _client(self, service: ServiceRecord) -> httpx.AsyncClient:
        headers = {}
        if service.credentials is not None:
            headers["Authorization"] = f"Bearer {service.credentials.get_secret_value()}"
        return httpx.AsyncClient(timeout=self._timeout, headers=headers)

    async def _get(self, ctx: ActionContext) -> dict[str, Any]:
        service, url = self._target(ctx)
        async with self._client(service) as client:
            try:
                response = await client.get(url)
                response.raise_for_status()
                body = response.json()
            except (httpx.HTTPError, ValueError) as error:
                raise ActionError(f"GET {url} failed: {error}") from error
        if not isinstance(body, dict):
            raise ActionError(f"GET {url} returned {type(body).__name__}, expected an object")
        return body

    async def _post(self, ctx: ActionContext, body: dict[str, Any]) -> dict[str, Any]:
        service, url = self._target(ctx)
        async with self._client(service) as client:
            try:
                response = await client.post(url, json=body)
            except httpx.HTTPError as error:
                raise ActionError(f"POST {url} failed: {error}") from error
        if response.is_error:
            # the service's own words say why (e.g. a value out of range), httpx's do not
            raise ActionError(
                f"POST {url} answered {response.status_code}: {response.text[:300].strip()}"
            )
        try:
            parsed = response.json()
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {"response": parsed}

    def _desired(self, ctx: ActionContext) -> tuple[str, Any]:
        params = ctx.action.parameters
        if ctx.action.action_type == "config_update":
            if "key" not in params or "value" not in params:
                raise ActionError("config_update needs parameters key and value")
            return str(params["key"]), params["value"]
        if ctx.action.action_type == "scale":
            replicas = params.get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ActionError("scale needs a non-negative integer parameter replicas")
            return "replicas", replicas
        return "", None

    async def prepare(self, ctx: ActionContext) -> dict[str, Any]:
        if ctx.action.action_type not in ("config_update", "scale"):
            return {"kind": ctx.action.action_type}
        key, _ = self._desired(ctx)
        current = await self._get(ctx)
        return {"kind": ctx.action.action_type, "key": key, "previous": current.get(key)}

    async def apply(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        kind = ctx.action.action_type
        if kind == "log_analysis":
            report = await self._get(ctx)
            return ActionOutcome(
                success=True,
                detail="log analysis collected",
                data=report,
                compensation_note=_NO_UNDO[kind],
            )
        if kind == "cache_clear":
            await self._post(ctx, {})
            return ActionOutcome(
                success=True,
                detail=f"cleared the cache of {ctx.action.target}",
                compensation_note=_NO_UNDO[kind],
            )
        if kind not in ("config_update", "scale"):
            raise ActionError(f"the http adapter does not {kind}")
        key, value = self._desired(ctx)
        body = {"key": key, "value": value} if kind == "config_update" else {"replicas": value}
        await self._post(ctx, body)
        return ActionOutcome(
            success=True,
            detail=f"{kind} {key}: {intent.get('previous')!r} -> {value!r}",
            data={"key": key, "previous": intent.get("previous"), "value": value},
            compensable=True,
            compensation_note=f"undo: set {key} back to {intent.get('previous')!r}",
        )

    async def reconcile(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome | None:
        if ctx.action.action_type not in ("config_update", "scale"):
            return None
        key, value = self._desired(ctx)
        if (await self._get(ctx)).get(key) == value:
            return ActionOutcome(
                success=True,
                detail=f"{key} was already {value!r}; not repeated",
                data={"key": key, "previous": intent.get("previous"), "value": value},
                compensable=True,
                compensation_note=f"undo: set {key} back to {intent.get('previous')!r}",
            )
        return None

    async def compensate(self, ctx: ActionContext, intent: dict[str, Any]) -> ActionOutcome:
        kind = ctx.action.action_type
        if kind not in ("config_update", "scale"):
            return ActionOutcome(success=True, detail=_NO_UNDO.get(kind, "nothing to undo"))
        key, previous = intent["key"], intent.get("previous")
        body = (
            {"key": key, "value": previous} if kind == "config_update" else {"replicas": previous}
        )
        await self._post(ctx, body)
        return ActionOutcome(success=True, detail=f"restored {key} to {previous!r}")
