"""Alertmanager's webhook (payload version 4): one Event per alert.

    {"version": "4", "groupKey": ..., "truncatedAlerts": 0, "status": "firing",
     "receiver": "aiops", "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "http://alertmanager:9093",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "...", "endsAt": "...", "generatorURL": "...",
                 "fingerprint": "c6eadffa33fcdf37"}]}

Mapping (docs/intake.md): event_type from labels.alertname (made a valid type name, else
"Alert"); service from the first present of AIOPS_INTAKE_SERVICE_LABELS (service, job,
instance); severity from labels.severity (unknown values: none); timestamp = startsAt;
the message from the first of AIOPS_INTAKE_MESSAGE_ANNOTATIONS (summary, description),
else the alertname. The event id is a UUIDv5 of the mapped content, so a notification
Alertmanager sends again unchanged (a retry, a group's repeat) is stored once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from aiops.events.envelope import Event
from aiops.intake.alerts import (
    AlertMapping,
    alert_block,
    build_event,
    content_id,
    event_type_name,
    first_present,
    severity_of,
)

SOURCE: Final = "alertmanager"

AlertStatus = Literal["firing", "resolved"]


class Alert(BaseModel):
    """One alert of a notification."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: AlertStatus | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str | None = None


class NotificationGroup(BaseModel):
    """What a notification says about its group (shared with Grafana's webhook)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    version: str | None = None
    group_key: str | None = Field(default=None, alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    receiver: str | None = None
    status: AlertStatus
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str | None = Field(default=None, alias="externalURL")


class WebhookMessage(NotificationGroup):
    """The body Alertmanager posts to a webhook receiver."""

    alerts: list[Alert]


def labels_fingerprint(labels: dict[str, str]) -> str:
    """An alert's identity when the sender gave none: a hash of its sorted label set (as
    Alertmanager's own fingerprint is)."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert_event(
    alert: Alert,
    group: NotificationGroup,
    mapping: AlertMapping,
    *,
    source: str,
    index: int,
    extra: dict[str, Any] | None = None,
) -> Event:
    """The Event for one alert; `extra` adds sender-specific keys to the payload."""
    labels = alert.labels
    alertname = labels.get("alertname")
    event_type = event_type_name(alertname)
    status = alert.status or group.status
    starts_at = alert.starts_at
    timestamp = starts_at if starts_at is not None and starts_at.year > 1 else datetime.now(UTC)
    payload: dict[str, Any] = {
        "message": first_present(alert.annotations, mapping.message_annotations)
        or alertname
        or event_type,
        "labels": labels,
        "annotations": alert.annotations,
        "generator_url": alert.generator_url,
        "alert": alert_block(
            source=source,
            status=status,
            fingerprint=alert.fingerprint or labels_fingerprint(labels),
            starts_at=starts_at,
            ends_at=alert.ends_at,
            receiver=group.receiver,
            external_url=group.external_url,
        ),
    }
    if extra:
        payload.update(extra)
    service = first_present(labels, mapping.service_labels)
    severity = severity_of(labels.get("severity"))
    return build_event(
        ("alerts", index),
        id=content_id(source, event_type, service, severity, timestamp.isoformat(), payload),
        timestamp=timestamp,
        event_type=event_type,
        source=source,
        service=service,
        severity=severity,
        payload=payload,
    )


def to_events(message: WebhookMessage, mapping: AlertMapping) -> list[Event]:
    """One Event per alert, in order; IntakeError names an alert that cannot be one."""
    return [
        alert_event(alert, message, mapping, source=SOURCE, index=i)
        for i, alert in enumerate(message.alerts)
    ]
