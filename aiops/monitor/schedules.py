"""One Temporal Schedule per registered service, `probe-<service>`, kept in step with the
registry by sync_schedules: created for a new service, updated when its probe settings
change, deleted when it is deregistered.

Each schedule starts a ProbeServiceWorkflow every interval (overlap SKIP: a probe still
running means the next one is skipped, never queued). The interval comes from the
service's metadata `probe_interval_s`, else AIOPS_MONITOR_PROBE_INTERVAL_S. Each schedule
carries a hash of its settings in its note, so an unchanged schedule is left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Final

import asyncpg
from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleListActionStartWorkflow,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from aiops.config import Settings
from aiops.monitor.models import PROBE_WORKFLOW, SCHEDULE_PREFIX, ProbeInput, ProbeOverrides

log = logging.getLogger(__name__)

_NOTE_PREFIX: Final = "aiops probe config "


class ProbeDefaults(BaseModel):
    interval_s: float = Field(default=30.0, ge=1)
    timeout_s: float = Field(default=5.0, gt=0)
    realert_s: float = Field(default=300.0, ge=0)
    unhealthy_after_s: float = Field(default=0.0, ge=0)
    stream: str = "events:monitor"
    task_queue: str = "aiops"
    report_latency: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ProbeDefaults:
        return cls(
            interval_s=settings.monitor_probe_interval_s,
            timeout_s=settings.monitor_probe_timeout_s,
            realert_s=settings.monitor_realert_s,
            unhealthy_after_s=settings.monitor_unhealthy_after_s,
            stream=settings.monitor_stream,
            task_queue=settings.temporal_task_queue,
        )


class DesiredProbe(BaseModel):
    schedule_id: str
    interval_s: float
    request: ProbeInput
    task_queue: str

    @property
    def config_hash(self) -> str:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def note(self) -> str:
        return _NOTE_PREFIX + self.config_hash

    def schedule(self) -> Schedule:
        every = timedelta(seconds=self.interval_s)
        # a fixed phase per service spreads the probes of many services over the interval
        phase_ms = int(self.config_hash, 16) % max(1, int(self.interval_s * 1000))
        return Schedule(
            action=ScheduleActionStartWorkflow(
                PROBE_WORKFLOW,
                self.request,
                id=self.schedule_id,
                task_queue=self.task_queue,
                # every attempt of the probe activity, with room to spare; a stuck run
                # must not hold the schedule (overlap SKIP) for long
                execution_timeout=timedelta(seconds=3 * (self.request.timeout_s + 30) + 10),
            ),
            spec=ScheduleSpec(
                intervals=[
                    ScheduleIntervalSpec(every=every, offset=timedelta(milliseconds=phase_ms))
                ]
            ),
            policy=SchedulePolicy(
                overlap=ScheduleOverlapPolicy.SKIP,
                # a missed probe is stale: after an outage run at most the latest one
                catchup_window=max(timedelta(seconds=10), every),
            ),
            state=ScheduleState(note=self.note),
        )


class SyncReport(BaseModel):
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    unchanged: int = 0
    # registered services that cannot be probed (no health check, or not http)
    unprobed: list[str] = Field(default_factory=list)

    def line(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.deleted)} deleted, {self.unchanged} unchanged, "
            f"{len(self.unprobed)} without an http health check"
        )


def desired_probe(
    name: str, metadata: dict[str, object], defaults: ProbeDefaults, prefix: str = SCHEDULE_PREFIX
) -> DesiredProbe:
    overrides = ProbeOverrides.from_metadata(dict(metadata))
    return DesiredProbe(
        schedule_id=prefix + name,
        interval_s=overrides.probe_interval_s or defaults.interval_s,
        task_queue=defaults.task_queue,
        request=ProbeInput(
            service=name,
            timeout_s=overrides.probe_timeout_s or defaults.timeout_s,
            realert_s=defaults.realert_s,
            stream=defaults.stream,
            report_latency=defaults.report_latency,
            unhealthy_after_s=defaults.unhealthy_after_s,
        ),
    )


async def desired_probes(
    pool: asyncpg.Pool, defaults: ProbeDefaults, prefix: str = SCHEDULE_PREFIX
) -> tuple[dict[str, DesiredProbe], list[str]]:
    """Schedule id -> probe for every service with an http health endpoint; and the
    names of those without one."""
    rows = await pool.fetch(
        "SELECT name, endpoint, health_check, metadata FROM services ORDER BY name"
    )
    wanted: dict[str, DesiredProbe] = {}
    unprobed: list[str] = []
    for row in rows:
        if row["health_check"] is None or not row["endpoint"].startswith(("http://", "https://")):
            unprobed.append(row["name"])
            continue
        probe = desired_probe(row["name"], row["metadata"] or {}, defaults, prefix)
        wanted[probe.schedule_id] = probe
    return wanted, unprobed


async def existing_schedules(client: Client, prefix: str = SCHEDULE_PREFIX) -> dict[str, str]:
    """Schedule id -> note, for the probe schedules Temporal lists (eventually consistent:
    a schedule created a moment ago may be missing)."""
    found: dict[str, str] = {}
    async for entry in await client.list_schedules():
        if not entry.id.startswith(prefix) or entry.schedule is None:
            continue
        action = entry.schedule.action
        if (
            isinstance(action, ScheduleListActionStartWorkflow)
            and action.workflow == PROBE_WORKFLOW
        ):
            found[entry.id] = entry.schedule.state.note or ""
    return found


async def sync_schedules(
    client: Client, pool: asyncpg.Pool, defaults: ProbeDefaults, prefix: str = SCHEDULE_PREFIX
) -> SyncReport:
    """Create, update and delete probe schedules until they match the registry."""
    wanted, unprobed = await desired_probes(pool, defaults, prefix)
    existing = await existing_schedules(client, prefix)
    report = SyncReport(unprobed=unprobed)
    for schedule_id, probe in wanted.items():
        if schedule_id not in existing:
            try:
                await client.create_schedule(
                    schedule_id, probe.schedule(), trigger_immediately=True
                )
                report.created.append(schedule_id)
                continue
            except ScheduleAlreadyRunningError:
                pass  # created a moment ago and not listed yet: compare below
        elif existing[schedule_id] == probe.note:
            report.unchanged += 1
            continue
        if await _update(client, probe):
            report.updated.append(schedule_id)
        else:
            report.unchanged += 1
    for schedule_id in sorted(set(existing) - set(wanted)):
        try:
            await client.get_schedule_handle(schedule_id).delete()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # deleted a moment ago, still listed
        report.deleted.append(schedule_id)
    if report.created or report.updated or report.deleted:
        log.info("probe schedules: %s", report.line())
    return report


async def _update(client: Client, probe: DesiredProbe) -> bool:
    changed = False

    def updater(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
        nonlocal changed
        state = current.description.schedule.state
        if state.note == probe.note:
            return None
        changed = True
        schedule = probe.schedule()
        # a schedule an operator paused stays paused
        schedule.state.paused = state.paused
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(probe.schedule_id).update(updater)
    return changed


async def delete_probe_schedule(
    client: Client, service: str, prefix: str = SCHEDULE_PREFIX
) -> bool:
    """Delete one service's schedule at once (deregistration); False when there was none."""
    try:
        await client.get_schedule_handle(prefix + service).delete()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
