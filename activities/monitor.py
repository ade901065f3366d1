"""The monitor activity: one health probe of one registered service."""

from __future__ import annotations

import asyncpg
import httpx
from temporalio import activity

from aiops.events.mesh import EventMesh
from aiops.monitor.limits import BUILTIN_LIMITS, LimitsCache, LimitsStore, RuntimeLimits
from aiops.monitor.models import PROBE_ACTIVITY, ProbeInput, ProbeResult
from aiops.monitor.probe import HealthProber


class MonitorActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        mesh: EventMesh,
        limits: RuntimeLimits | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        # the defaults, overridden at run time by `aiops limits set`
        cache = LimitsCache(LimitsStore(pool, limits or BUILTIN_LIMITS))
        self.prober = HealthProber(pool, mesh, cache, http)

    @activity.defn(name=PROBE_ACTIVITY)
    async def probe_service(self, request: ProbeInput) -> ProbeResult:
        info = activity.info()
        return await self.prober.probe(request, f"{info.workflow_id}/{info.workflow_run_id}")
