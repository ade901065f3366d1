"""What every intake mapping shares: the alert payload, names, severities, event ids.

An alert from any sender becomes an Event whose payload is

    {"message": ..., "labels": {...}, "annotations": {...}, "generator_url": ...,
     "alert": {"source", "status", "fingerprint", "starts_at", "ends_at", "receiver",
               "external_url"}}

`payload.alert.status` (firing, resolved, acknowledged) tells the detector whether the
event is a problem; `payload.alert.fingerprint` (the sender's own identity of the alert)
keys the incident, so the same alert firing again and its resolution find one incident.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import to_json

from aiops.config import Settings
from aiops.events.envelope import Event, Severity

# Ids of intake events: a UUIDv5 of what the event says, so a sender's retry of the same
# notification is stored once, and anything that changed is a new event.
INTAKE_NAMESPACE: Final = uuid.UUID("3b8f0c52-6d1e-5a47-9e2b-7c4d1f0a8e63")

FALLBACK_TYPE: Final = "Alert"
_MAX_TYPE: Final = 128
_INVALID_RUN: Final = re.compile(r"[^A-Za-z0-9_.:\-]+")
_SEVERITIES: Final = frozenset(s.value for s in Severity)
_SEVERITY_ALIASES: Final = {"warn": "warning", "err": "error", "fatal": "critical"}
# Go's zero time: Alertmanager and Grafana send it for "no end yet"
_ZERO_YEAR: Final = 1


class IntakeError(ValueError):
    """A body that validated but cannot become an event; `errors` name what is wrong."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in errors))
        self.errors = list(errors)


def _loc(loc: Sequence[object]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def validation_errors(
    error: ValidationError, prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """A pydantic error as a list of {loc, msg, type}, each loc under `prefix`."""
    return [
        {"loc": [*prefix, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]


def event_type_name(name: str | None) -> str:
    """`name` made an envelope event type: runs of other characters become `_`; a name
    starting with no letter is prefixed `Alert_`; one with nothing usable is `Alert`."""
    if not name:
        return FALLBACK_TYPE
    cleaned = _INVALID_RUN.sub("_", name.strip()).strip("_")
    if not cleaned or not any(c.isalnum() for c in cleaned):
        return FALLBACK_TYPE
    if not ("A" <= cleaned[0] <= "Z" or "a" <= cleaned[0] <= "z"):
        cleaned = f"{FALLBACK_TYPE}_{cleaned}"
    return cleaned[:_MAX_TYPE]


def severity_of(value: object) -> str | None:
    """A known severity (warn, err and fatal normalised as the envelope does), else None."""
    if not isinstance(value, str):
        return None
    lowered = value.strip().lower()
    lowered = _SEVERITY_ALIASES.get(lowered, lowered)
    return lowered if lowered in _SEVERITIES else None


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; None for no time or Go's zero time."""
    if value is None or value.year == _ZERO_YEAR:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def first_present(values: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        found = values.get(name)
        if found:
            return found
    return None


def content_id(source: str, *parts: object) -> uuid.UUID:
    """The event id for what a notification said: equal content, equal id."""
    return uuid.uuid5(INTAKE_NAMESPACE, source + "\x00" + to_json(parts).decode())


def alert_block(
    *,
    source: str,
    status: str,
    fingerprint: str | None,
    starts_at: datetime | None,
    ends_at: datetime | None,
    receiver: str | None,
    external_url: str | None,
) -> dict[str, Any]:
    return {
        "source": source,
        "status": status,
        "fingerprint": fingerprint,
        "starts_at": iso(starts_at),
        "ends_at": iso(ends_at),
        "receiver": receiver,
        "external_url": external_url,
    }


def build_event(loc: Sequence[str | int], **fields: Any) -> Event:
    """An Event from mapped fields; a value the envelope refuses (a service over 256
    characters, a NUL, NaN) is an IntakeError naming the item it came from."""
    try:
        return Event(**fields)
    except ValidationError as error:
        raise IntakeError(
            [
                {
                    "loc": [*loc, *item["loc"]],
                    "msg": f"cannot become an event: {item['msg']}",
                    "type": item["type"],
                }
                for item in error.errors(
                    include_url=False, include_context=False, include_input=False
                )
            ]
        ) from None


def _names(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class AlertMapping:
    """Which labels name the service and which annotations hold the message, in order
    (AIOPS_INTAKE_SERVICE_LABELS, AIOPS_INTAKE_MESSAGE_ANNOTATIONS)."""

    service_labels: tuple[str, ...] = ("service", "job", "instance")
    message_annotations: tuple[str, ...] = ("summary", "description")

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertMapping:
        return cls(
            service_labels=_names(settings.intake_service_labels),
            message_annotations=_names(settings.intake_message_annotations),
        )
