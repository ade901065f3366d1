"""Which events are problems, how bad, and what text identifies them.

The default rules, in order (the first that applies wins):

1. The engine's own bookkeeping (AgentAction, ActionCompleted, ActionFailed,
   OutcomeRecorded, PatternEvolved) is never a problem: a failed healing action belongs to
   the incident that ran it, and routing it back would open incidents about incidents.
2. The seed's problem types: ServiceError and ImportFailed are errors, ServiceTimeout a
   timeout, ServiceUnhealthy unhealthy, Anomaly an anomaly.
3. A custom type whose name ends in Error, Failed, Failure or Exception is an error; in
   Timeout or TimedOut a timeout; in Unhealthy unhealthy; in Anomaly an anomaly (any case).
4. Any other event with severity error or critical is an error, and so is any alert from
   intake that is firing (payload.alert.status); a resolved or acknowledged one is not a
   problem (the router tells its incident instead).
5. Everything else (ServiceRecovered, MetricReport, BookmarkCreated, ...) is informational:
   stored, not routed to an incident.

Severity: the event's own (critical -> critical, error -> high, warning -> medium, info or
debug -> low), else by category (error and unhealthy high, timeout and anomaly medium).

The text fingerprinted is the payload's first non-empty string among message, error, msg,
reason, detail and description; else the event type. The service is the event's service,
else its source, so the same message from two services is two problems.

The pattern library (aiops.patterns.detector.PatternDetector) implements `Detector`:
a matching active pattern decides, these rules are its fallback.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Protocol

from aiops.events.envelope import Event, EventType, Severity
from aiops.models.incident import ProblemCategory, ProblemSeverity

MAX_TEXT: Final = 2000

INTERNAL_TYPES: Final = frozenset(
    {
        EventType.AGENT_ACTION,
        EventType.ACTION_COMPLETED,
        EventType.ACTION_FAILED,
        EventType.OUTCOME_RECORDED,
        EventType.PATTERN_EVOLVED,
    }
)

PROBLEM_TYPES: Final[dict[str, ProblemCategory]] = {
    EventType.SERVICE_ERROR: ProblemCategory.ERROR,
    EventType.IMPORT_FAILED: ProblemCategory.ERROR,
    EventType.SERVICE_TIMEOUT: ProblemCategory.TIMEOUT,
    EventType.SERVICE_UNHEALTHY: ProblemCategory.UNHEALTHY,
    EventType.ANOMALY: ProblemCategory.ANOMALY,
}

_SUFFIXES: Final[tuple[tuple[str, ProblemCategory], ...]] = (
    ("error", ProblemCategory.ERROR),
    ("failed", ProblemCategory.ERROR),
    ("failure", ProblemCategory.ERROR),
    ("exception", ProblemCategory.ERROR),
    ("timeout", ProblemCategory.TIMEOUT),
    ("timedout", ProblemCategory.TIMEOUT),
    ("unhealthy", ProblemCategory.UNHEALTHY),
    ("anomaly", ProblemCategory.ANOMALY),
)

_FROM_EVENT_SEVERITY: Final = {
    Severity.CRITICAL: ProblemSeverity.CRITICAL,
    Severity.ERROR: ProblemSeverity.HIGH,
    Severity.WARNING: ProblemSeverity.MEDIUM,
    Severity.INFO: ProblemSeverity.LOW,
    Severity.DEBUG: ProblemSeverity.LOW,
}

_BY_CATEGORY: Final = {
    ProblemCategory.ERROR: ProblemSeverity.HIGH,
    ProblemCategory.UNHEALTHY: ProblemSeverity.HIGH,
    ProblemCategory.TIMEOUT: ProblemSeverity.MEDIUM,
    ProblemCategory.ANOMALY: ProblemSeverity.MEDIUM,
}

TEXT_FIELDS: Final = ("message", "error", "msg", "reason", "detail", "description")


@dataclass(frozen=True, slots=True)
class Detection:
    """What made an event a problem. A dataclass, not a model: one is made for every
    problem event of a storm, from values this module already holds valid."""

    category: ProblemCategory
    severity: ProblemSeverity
    # what the fingerprinter sees: the variable parts are masked there, not here
    text: str
    service: str
    pattern_id: str | None = None  # the library pattern that decided, if one did


class Detector(Protocol):
    def classify(self, event: Event) -> Detection | None:
        """A Detection when the event is a problem, None when it is informational."""
        ...


@functools.lru_cache(maxsize=4096)
def type_category(event_type: str) -> ProblemCategory | None:
    """The category an event type names by itself (rules 2 and 3), if any. Cached: a
    stream has few event types, and every event of a storm asks."""
    known = PROBLEM_TYPES.get(event_type)
    if known is not None:
        return known
    name = event_type.lower()
    for suffix, category in _SUFFIXES:
        if name.endswith(suffix):
            return category
    return None


def alert_status(event: Event) -> str | None:
    """firing, resolved or acknowledged for an alert from intake (payload.alert), else None."""
    alert = event.payload.get("alert")
    if isinstance(alert, dict):
        status = alert.get("status")
        if isinstance(status, str):
            return status
    return None


def category_of(event: Event) -> ProblemCategory | None:
    if event.event_type in INTERNAL_TYPES:
        return None
    status = alert_status(event)
    if status is not None and status != "firing":
        return None  # resolved or acknowledged: news for the incident, not a problem
    category = type_category(event.event_type)
    if category is None and status == "firing":
        # a firing alert is a problem whatever its name: an alertname aiops does not know
        # is stored, coalesced and escalated as unknown, never dropped
        return ProblemCategory.ERROR
    if category is not None:
        return category
    if event.severity in (Severity.ERROR, Severity.CRITICAL):
        return ProblemCategory.ERROR
    return None


def default_severity(event: Event, category: ProblemCategory) -> ProblemSeverity:
    """The event's own severity, else the category's (this module's docstring)."""
    if event.severity is not None:
        return _FROM_EVENT_SEVERITY[event.severity]
    return _BY_CATEGORY[category]


def text_of(event: Event) -> str:
    for name in TEXT_FIELDS:
        value = event.payload.get(name)
        if isinstance(value, str) and value.strip():
            return value[:MAX_TEXT]
    return event.event_type


class DefaultDetector:
    """The rules in this module's docstring."""

    def classify(self, event: Event) -> Detection | None:
        category = category_of(event)
        if category is None:
            return None
        return Detection(
            category=category,
            severity=default_severity(event, category),
            text=text_of(event),
            service=event.service or event.source,
        )
