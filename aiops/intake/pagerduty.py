"""PagerDuty Events API v2 `enqueue` bodies, answered as PagerDuty answers them.

    {"routing_key": "...", "event_action": "trigger", "dedup_key": "disk-full-db1",
     "payload": {"summary": "Disk full on db1", "source": "db1", "severity": "critical",
                 "component": "postgres", "group": "prod-db", "class": "disk",
                 "timestamp": "...", "custom_details": {...}},
     "client": "...", "client_url": "...", "links": [...], "images": [...]}

A trigger needs payload.summary, payload.source and payload.severity (critical, error,
warning, info); acknowledge and resolve need the dedup_key of the alert they act on. A
trigger without a dedup_key gets one as PagerDuty makes it (a UUID's hex), returned in the
answer. The routing_key is never stored: aiops may use it as the sender's credential.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aiops.events.envelope import Event
from aiops.intake.alerts import alert_block, build_event, event_type_name

SOURCE: Final = "pagerduty"
FALLBACK_TYPE: Final = "PagerDutyAlert"
_STATUS: Final = {"trigger": "firing", "acknowledge": "acknowledged", "resolve": "resolved"}


class AlertDetails(BaseModel):
    """`payload` of an alert event."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1)
    severity: Literal["critical", "error", "warning", "info"]
    timestamp: datetime | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    custom_details: Any = None


class EnqueueRequest(BaseModel):
    """The body of POST /v2/enqueue."""

    model_config = ConfigDict(extra="allow")

    routing_key: str = Field(min_length=1)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, min_length=1, max_length=255)
    payload: AlertDetails | None = None
    client: str | None = None
    client_url: str | None = None
    links: list[dict[str, Any]] = Field(default_factory=list)
    images: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _needs(self) -> EnqueueRequest:
        if self.event_action == "trigger" and self.payload is None:
            raise ValueError("'payload' is missing: a trigger event needs one")
        if self.event_action != "trigger" and self.dedup_key is None:
            raise ValueError(f"'dedup_key' is missing: {self.event_action} events need one")
        return self


class RoutingKeyOnly(BaseModel):
    """Enough of a body to find its routing key before it is validated in full."""

    routing_key: str = Field(min_length=1)


class Accepted(BaseModel):
    status: Literal["success"] = "success"
    message: str = "Event processed"
    dedup_key: str


class Invalid(BaseModel):
    status: Literal["invalid event"] = "invalid event"
    message: str = "Event object is invalid"
    errors: list[str]


def to_event(request: EnqueueRequest) -> tuple[Event, str]:
    """The Event and the dedup_key to answer with (generated when the sender gave none)."""
    dedup_key = request.dedup_key or uuid.uuid4().hex
    details = request.payload
    status = _STATUS[request.event_action]
    labels: dict[str, str] = {}
    timestamp = datetime.now(UTC)
    message = f"{request.event_action} {dedup_key}"
    service: str | None = None
    severity: str | None = None
    event_type = FALLBACK_TYPE
    extra: dict[str, Any] = {}
    if details is not None:
        message = details.summary
        service = details.component or details.source
        severity = details.severity
        event_type = event_type_name(details.class_) if details.class_ else FALLBACK_TYPE
        if details.timestamp is not None:
            timestamp = details.timestamp
        labels = {
            k: v
            for k, v in (
                ("source", details.source),
                ("severity", details.severity),
                ("component", details.component),
                ("group", details.group),
                ("class", details.class_),
            )
            if v
        }
        if details.custom_details is not None:
            extra["custom_details"] = details.custom_details
    pagerduty = {
        k: v
        for k, v in (
            ("event_action", request.event_action),
            ("client", request.client),
            ("links", request.links),
            ("images", request.images),
        )
        if v
    }
    payload: dict[str, Any] = {
        "message": message,
        "labels": labels,
        "annotations": {},
        "generator_url": request.client_url,
        "alert": alert_block(
            source=SOURCE,
            status=status,
            fingerprint=dedup_key,
            starts_at=timestamp,
            ends_at=None,
            receiver=None,
            external_url=None,
        ),
        **extra,
        "pagerduty": pagerduty,
    }
    event = build_event(
        ("payload",),
        timestamp=timestamp,
        event_type=event_type,
        source=SOURCE,
        service=service,
        severity=severity,
        payload=payload,
    )
    return event, dedup_key
