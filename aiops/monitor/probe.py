"""One health probe: GET the service's health endpoint, record the outcome in its registry
row, and publish what changed.

The transition (healthy -> unhealthy, unhealthy -> healthy) is decided from the registry
row, locked for the decision, not from memory: probes of one service may run on any worker.
Events are published before the row's transaction commits, so a crash in between leaves
the old state and the retried probe publishes again (with the same event id, which the
event store keeps once) rather than never.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import httpx

from aiops.events.envelope import Event, EventType, Severity
from aiops.events.mesh import EventMesh
from aiops.monitor.limits import AdjustableLimiter, LimitsCache
from aiops.monitor.models import MONITOR_SOURCE, ProbeInput, ProbeResult

log = logging.getLogger(__name__)

# event ids derived from the probe run: a retried probe republishes the same ids
_EVENT_NAMESPACE: Final = uuid.UUID("0b7c4a55-2f61-5d1e-9a3c-7d8e6f4b2a10")
_MAX_ERROR: Final = 300


@dataclass(frozen=True)
class HealthCheck:
    healthy: bool
    latency_ms: float
    status_code: int | None = None
    error: str | None = None


async def check_health(client: httpx.AsyncClient, url: str, timeout_s: float) -> HealthCheck:
    """GET url; healthy on a 2xx answer within timeout_s (the whole exchange, body included)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.get(url, timeout=timeout_s)
    except TimeoutError:
        return HealthCheck(False, _since(started), error=f"no answer within {timeout_s:g} s")
    except httpx.TimeoutException:
        return HealthCheck(False, _since(started), error=f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as error:
        detail = str(error) or type(error).__name__
        return HealthCheck(False, _since(started), error=detail[:_MAX_ERROR])
    latency = _since(started)
    if 200 <= response.status_code < 300:
        return HealthCheck(True, latency, response.status_code)
    return HealthCheck(
        False,
        latency,
        response.status_code,
        f"HTTP {response.status_code} {response.reason_phrase}".strip()[:_MAX_ERROR],
    )


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


@dataclass(frozen=True)
class _Target:
    url: str | None
    critical: bool


class HealthProber:
    """Probes services for the monitor activity; at most `max_agents` at once per process
    (a run-time limit, re-read through the LimitsCache)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        mesh: EventMesh,
        limits: LimitsCache | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._pool = pool
        self._mesh = mesh
        self._limits = limits
        self._http = http
        self._limiter = AdjustableLimiter(limits.last.max_agents if limits else 16)

    @property
    def limiter(self) -> AdjustableLimiter:
        return self._limiter

    def _client(self) -> httpx.AsyncClient:
        # made on first use, inside the worker's event loop
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=True)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def probe(self, request: ProbeInput, run_key: str) -> ProbeResult:
        """Probe one service. run_key names this probe run (the same on a retry)."""
        target = await self._target(request.service)
        if target is None:
            return ProbeResult(service=request.service, skipped="not registered")
        if target.url is None:
            return ProbeResult(service=request.service, skipped="no http health endpoint")
        if self._limits is not None:
            wanted = (await self._limits.current()).max_agents
            if wanted != self._limiter.capacity:
                await self._limiter.resize(wanted)
        async with self._limiter.slot():
            check = await check_health(self._client(), target.url, request.timeout_s)
        return await self._record(request, target, check, run_key)

    async def _target(self, name: str) -> _Target | None:
        row = await self._pool.fetchrow(
            "SELECT endpoint, health_check, critical FROM services WHERE name = $1", name
        )
        if row is None:
            return None
        endpoint, path = row["endpoint"], row["health_check"]
        if path is None or not endpoint.startswith(("http://", "https://")):
            return _Target(None, row["critical"])
        return _Target(endpoint + (path if path.startswith("/") else "/" + path), row["critical"])

    async def _record(
        self, request: ProbeInput, target: _Target, check: HealthCheck, run_key: str
    ) -> ProbeResult:
        result = ProbeResult(
            service=request.service,
            healthy=check.healthy,
            latency_ms=check.latency_ms,
            status_code=check.status_code,
            error=check.error,
        )
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT healthy, unhealthy_since, last_alert_at, now() AS now"
                " FROM services WHERE name = $1 FOR UPDATE",
                request.service,
            )
            if row is None:  # deregistered while we were probing
                return result.model_copy(update={"skipped": "not registered", "healthy": None})
            previous: bool | None = row["healthy"]
            now: datetime = row["now"]
            last_alert: datetime | None = row["last_alert_at"]
            since: datetime | None = row["unhealthy_since"] if previous is False else None
            confirmed = now - (since or now) >= timedelta(seconds=request.unhealthy_after_s)
            alert = (
                not check.healthy
                and confirmed
                and (last_alert is None or now - last_alert >= timedelta(seconds=request.realert_s))
            )
            # a failure too short to be reported recovers silently too
            recovered = check.healthy and previous is False and last_alert is not None
            await conn.execute(
                """
                UPDATE services SET healthy = $2, last_checked_at = now(), last_latency_ms = $3,
                    unhealthy_since = $4,
                    last_alert_at = CASE WHEN $5 THEN now() WHEN $2 THEN NULL
                                         ELSE last_alert_at END
                WHERE name = $1
                """,
                request.service,
                check.healthy,
                check.latency_ms,
                None if check.healthy else (since or now),
                alert,
            )
            events = []
            if alert:
                events.append(
                    self._unhealthy(
                        request, target, check, previous, since or now, last_alert is not None
                    )
                )
            if recovered:
                events.append(self._recovered(request, check, since, now))
            if check.healthy and request.report_latency:
                events.append(self._metric(request, check))
            if events:
                run = f"{run_key}/{request.service}"
                events = [
                    e.model_copy(
                        update={"id": uuid.uuid5(_EVENT_NAMESPACE, f"{run}/{e.event_type}")}
                    )
                    for e in events
                ]
                await self._mesh.publish_many(events, stream=request.stream)
        if alert or recovered:
            log.info(
                "%s is %s (%s)",
                request.service,
                "healthy again" if recovered else "unhealthy",
                check.error or f"{check.latency_ms:.0f} ms",
            )
        return result.model_copy(
            update={"previous": previous, "published": [e.event_type for e in events]}
        )

    def _unhealthy(
        self,
        request: ProbeInput,
        target: _Target,
        check: HealthCheck,
        previous: bool | None,
        since: datetime,
        repeat: bool,
    ) -> Event:
        return Event(
            event_type=EventType.SERVICE_UNHEALTHY,
            source=MONITOR_SOURCE,
            service=request.service,
            severity=Severity.CRITICAL if target.critical else Severity.ERROR,
            payload={
                # stable text: one incident per service however the check fails
                "message": f"service {request.service} is unhealthy: its health check fails",
                "endpoint": target.url,
                "latency_ms": check.latency_ms,
                "status_code": check.status_code,
                "error": check.error,
                "previous": _state(previous),
                "unhealthy_since": since.isoformat(),
                "repeat": repeat,
            },
        )

    def _recovered(
        self, request: ProbeInput, check: HealthCheck, since: datetime | None, now: datetime
    ) -> Event:
        return Event(
            event_type=EventType.SERVICE_RECOVERED,
            source=MONITOR_SOURCE,
            service=request.service,
            severity=Severity.INFO,
            payload={
                "message": f"service {request.service} is healthy again",
                "latency_ms": check.latency_ms,
                "status_code": check.status_code,
                "down_for_s": round((now - since).total_seconds(), 3) if since else None,
            },
        )

    def _metric(self, request: ProbeInput, check: HealthCheck) -> Event:
        return Event(
            event_type=EventType.METRIC_REPORT,
            source=MONITOR_SOURCE,
            service=request.service,
            payload={"latency_ms": check.latency_ms, "origin": "health_probe"},
        )


def _state(value: bool | None) -> str:
    return "unknown" if value is None else ("healthy" if value else "unhealthy")
