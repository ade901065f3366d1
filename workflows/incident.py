"""IncidentWorkflow, minimal: one run per problem fingerprint, fed by the event mesh.

The listener signal-with-starts it (`observe`) with one coalesced Observation per batch, so
an event storm is one incident with a counter. It closes after a quiet period with no new
observation. Diagnosis, healing and learning grow from here in the workflows issue.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aiops.events.envelope import Event
    from aiops.models.incident import (
        IncidentInput,
        IncidentStatus,
        Observation,
        ProblemCategory,
        ProblemSeverity,
    )


@workflow.defn(name="IncidentWorkflow")
class IncidentWorkflow:
    @workflow.init
    def __init__(self, incident: IncidentInput) -> None:
        self._status = (
            incident.carried.model_copy()
            if incident.carried is not None
            else IncidentStatus(
                fingerprint=incident.fingerprint or workflow.info().workflow_id,
                template=incident.template or "",
                category=incident.category,
                severity=incident.severity,
                service=incident.service,
                replay=incident.replay,
            )
        )
        self._fresh = False

    @workflow.signal
    def observe(self, observation: Observation) -> None:
        status = self._status
        status.observations += 1
        status.events += observation.count
        status.template = status.template or observation.template
        status.category = status.category or observation.category
        status.service = status.service or observation.service
        if status.severity is None or observation.severity.rank > status.severity.rank:
            status.severity = observation.severity
        if status.first_seen is None or observation.first_seen < status.first_seen:
            status.first_seen = observation.first_seen
        if status.last_seen is None or observation.last_seen >= status.last_seen:
            status.last_seen = observation.last_seen
            status.last_sample = observation.sample
        self._fresh = True

    @workflow.query
    def status(self) -> IncidentStatus:
        return self._status

    @workflow.run
    async def run(self, incident: IncidentInput) -> IncidentStatus:
        if self._status.events == 0:
            # Started by hand (no signal came with the start): the input is the first event.
            self.observe(_observation_from(incident, workflow.now()))
        cool_down = timedelta(seconds=incident.cool_down_s)
        while True:
            self._fresh = False
            try:
                await workflow.wait_condition(lambda: self._fresh, timeout=cool_down)
            except TimeoutError:
                if not self._fresh:
                    break
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(incident.model_copy(update={"carried": self._status}))
        self._status.open = False
        return self._status


def _observation_from(incident: IncidentInput, now: datetime) -> Observation:
    sample = Event(
        id=incident.event_id or workflow.uuid4(),
        timestamp=now,
        event_type=incident.event_type,
        source=incident.source,
        payload=incident.payload,
        correlation_id=incident.correlation_id,
        service=incident.service,
    )
    return Observation(
        fingerprint=incident.fingerprint or workflow.info().workflow_id,
        template=incident.template or f"{incident.event_type} from {incident.source}",
        category=incident.category or ProblemCategory.ERROR,
        severity=incident.severity or ProblemSeverity.MEDIUM,
        service=incident.service,
        count=1,
        sample=sample,
        first_seen=sample.timestamp,
        last_seen=sample.timestamp,
        replay=incident.replay,
    )
