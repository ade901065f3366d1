"""What the event mesh hands to an IncidentWorkflow, and what the workflow reports back.

A person can start an incident by hand with the real CLI:

    temporal workflow start --type IncidentWorkflow --task-queue aiops \\
        --workflow-id incident-manual-1 \\
        --input '{"event_type": "ServiceTimeout", "source": "import-service",
                  "payload": {"duration_s": 30}}'
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from aiops.events.envelope import Event, EventTypeName
from aiops.models.diagnosis import Diagnosis
from aiops.models.healing import HealingPlan, HealingResult, HealingStatus
from aiops.models.learning import LearningResult


class ProblemCategory(StrEnum):
    ERROR = "error"
    TIMEOUT = "timeout"
    UNHEALTHY = "unhealthy"
    ANOMALY = "anomaly"


class ProblemSeverity(StrEnum):
    """The seed's Severity scale for problems (events use debug..critical)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    ProblemSeverity.LOW: 0,
    ProblemSeverity.MEDIUM: 1,
    ProblemSeverity.HIGH: 2,
    ProblemSeverity.CRITICAL: 3,
}


# An observe signal names at most this many of its events (the newest); the rest are in
# the event store, found by fingerprint and time. With the sample's bounded size, a long
# storm adds bounded bytes per signal to the incident's history.
OBSERVED_EVENT_IDS: Final = 16
# The sample's payload, as JSON, beyond which it is cut (the full event is in the store).
SAMPLE_PAYLOAD_BYTES: Final = 4096


class Observation(BaseModel):
    """One batch's worth of events for one fingerprint, coalesced into one signal."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str = Field(min_length=1)
    template: str
    category: ProblemCategory
    severity: ProblemSeverity
    service: str | None = None
    count: int = Field(ge=1, description="events with this fingerprint in the batch")
    sample: Event = Field(description="the newest event of the batch for this fingerprint")
    first_seen: datetime
    last_seen: datetime
    replay: bool = False
    pattern_id: str | None = Field(
        default=None, description="the library pattern that matched the sample, if any"
    )
    # optional, so histories recorded before it replay unchanged
    event_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=OBSERVED_EVENT_IDS,
        description="ids of the newest events counted (at most 16), newest last",
    )


class PlanRung(BaseModel):
    """One plan the escalation ladder tried in an incident, and how it ended."""

    solution_id: str | None
    description: str
    outcome: str
    healing_workflow_id: str
    detail: str = ""


class IncidentStatus(BaseModel):
    """What the `status` query returns; also the workflow's result."""

    fingerprint: str
    template: str = ""
    category: ProblemCategory | None = None
    severity: ProblemSeverity | None = None
    service: str | None = None
    observations: int = Field(default=0, description="signals received")
    events: int = Field(default=0, description="events those signals stood for")
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    last_sample: Event | None = None
    open: bool = True
    replay: bool = False
    pattern_id: str | None = Field(
        default=None, description="the pattern that opened it; its outcome counts for it"
    )
    # --- what the incident did about it (filled as the phases run) ---
    phase: str = "detected"
    problem_id: str | None = None
    diagnosis: Diagnosis | None = None
    plan: HealingPlan | None = None
    healing_workflow_id: str | None = None
    healing: HealingStatus | None = None
    healing_result: HealingResult | None = None
    pending_approval: str | None = None
    outcome: str | None = None
    learning: LearningResult | None = None
    resolved: bool = False
    resolved_at: datetime | None = None
    source_resolved_at: datetime | None = Field(
        default=None, description="when the alert's own source said it resolved"
    )
    source_resolved_by: str | None = None
    silenced_until: datetime | None = Field(
        default=None, description="held back by a silence or maintenance window until then"
    )
    silence_reason: str | None = None
    mode: str | None = Field(
        default=None,
        description="act, approve-all or shadow: its service's mode as the incident read it "
        "for people (where actions run the mode is read again)",
    )
    rungs: list[PlanRung] = Field(
        default_factory=list,
        description="the plans tried before the current one in this attempt (the ladder)",
    )
    # --- after the first attempt (bounded: one entry per new attempt at most) ---
    retries: int = Field(
        default=0, description="new attempts made because the problem went on after one failed"
    )
    excluded_solutions: list[str] = Field(
        default_factory=list, description="solutions that failed here, left out of new attempts"
    )
    recorded_events: int = Field(
        default=0, description="events already counted in the knowledge graph's occurrences"
    )
    runs: int = Field(default=1, description="runs of this incident (continue-as-new)")

    def summary(self) -> str:
        """One line for the Web UI memo and `aiops incidents`."""
        what = self.template or self.fingerprint
        where = f" on {self.service}" if self.service else ""
        done = f": {self.outcome}" if self.outcome else f" ({self.phase})"
        fix = f" by {self.plan.description!r}" if self.plan and self.outcome else ""
        mode = f" [{self.mode}]" if self.mode and self.mode != "act" else ""
        return f"{what}{where}{mode}, {self.events} event(s){done}{fix}"[:300]


class ProblemRecordRequest(BaseModel):
    fingerprint: str
    template: str
    description: str
    service: str | None = None
    category: str | None = None
    severity: str | None = None
    event_type: str
    occurrences: int = 1


class ProblemRef(BaseModel):
    problem_id: str
    occurrence_count: int
    created: bool


class EscalationRequest(BaseModel):
    incident_id: str
    reason: str
    service: str | None = None
    causation_event_id: str | None = None
    key: str | None = Field(
        default=None,
        description="tells apart escalations of one incident (a new attempt, the ladder's "
        "end); unset: one per workflow",
    )


class IncidentInput(BaseModel):
    """How an incident starts: the first problem event, plus what the router knows.

    Only event_type and source are required, so the input can be typed by hand.
    """

    event_type: EventTypeName
    source: str = Field(min_length=1, max_length=256)
    payload: dict[str, Any] = Field(default_factory=dict)
    service: str | None = None
    severity: ProblemSeverity | None = None
    category: ProblemCategory | None = None
    fingerprint: str | None = None
    template: str | None = None
    event_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    replay: bool = False
    pattern_id: str | None = Field(
        default=None, description="the library pattern that matched the first event, if any"
    )
    # the incident closes after this long without a new observation
    cool_down_s: float = Field(default=600.0, gt=0)
    # set when the workflow continues as new, so counts survive the new run
    carried: IncidentStatus | None = None
    # the listener sets both from AIOPS_INCIDENT_MAX_RETRIES and AIOPS_INCIDENT_HISTORY_BUDGET
    max_retries: int = Field(
        default=2, ge=0, description="new attempts while the problem goes on after one failed"
    )
    history_budget: int = Field(
        default=10_000, ge=100, description="history events after which a run continues as new"
    )


class SourceResolved(BaseModel):
    """The alert behind an incident resolved at its source (Alertmanager, PagerDuty...)."""

    source: str
    status: str = "resolved"
    event_id: str | None = None
    at: datetime
