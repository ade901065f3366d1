"""The mode an incident runs under: for its status, memo and the AiopsMode attribute."""

from __future__ import annotations

import time

import asyncpg
from temporalio import activity
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from aiops import search_attributes as sa
from aiops.modes import IncidentMode, ModeStore

# a cluster that lacks AiopsMode may get it registered later: ask again after this long
_RECHECK_S = 60.0


class ModeActivities:
    def __init__(self, pool: asyncpg.Pool, client: Client | None) -> None:
        self._modes = ModeStore(pool)
        self._client = client
        self._searchable: bool | None = None
        self._checked_at = 0.0

    @activity.defn(name="incident_mode")
    async def incident_mode(self, service: str | None) -> IncidentMode:
        return IncidentMode(
            mode=await self._modes.effective(service), searchable=await self._can_search()
        )

    async def _can_search(self) -> bool:
        """Whether the namespace has AiopsMode: an upsert of an attribute the cluster does
        not know fails the workflow task, so a cluster set up before it existed goes on
        without it."""
        if self._client is None:
            return False
        if self._searchable or time.monotonic() - self._checked_at < _RECHECK_S:
            return bool(self._searchable)
        self._checked_at = time.monotonic()
        try:
            found = await self._client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=self._client.namespace)
            )
        except RPCError:
            activity.logger.warning("cannot list search attributes; AiopsMode is not set")
            self._searchable = False
            return False
        self._searchable = sa.MODE.name in found.custom_attributes
        return self._searchable
