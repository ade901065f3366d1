"""The event envelope and its wire format.

On a Redis stream an event is one entry with one field, ``event``, holding the envelope as
UTF-8 JSON, so any Redis client in any language can publish:

    XADD events:myapp * event '{"event_type":"ServiceTimeout","source":"import-service",
                                 "payload":{"duration_s":30}}'

``id`` and ``timestamp`` may be left out: the listener derives them from the stream entry
(a UUIDv5 of stream and entry id, the entry id's milliseconds), so a redelivered entry gets
the same id and is stored once.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import to_json

WIRE_FIELD: Final = "event"
_WIRE_FIELD_BYTES: Final = WIRE_FIELD.encode()
# Ids derived from stream entries live in their own UUIDv5 namespace.
ENTRY_NAMESPACE: Final = uuid.UUID("6f1d2c4e-8a3b-5e7f-9c0d-1a2b3c4d5e6f")


class EventType(StrEnum):
    """The seed's known event types; any other identifier is a custom type."""

    SERVICE_TIMEOUT = "ServiceTimeout"
    SERVICE_ERROR = "ServiceError"
    SERVICE_UNHEALTHY = "ServiceUnhealthy"
    SERVICE_RECOVERED = "ServiceRecovered"
    ANOMALY = "Anomaly"
    METRIC_REPORT = "MetricReport"
    IMPORT_FAILED = "ImportFailed"
    BOOKMARK_CREATED = "BookmarkCreated"
    AGENT_ACTION = "AgentAction"
    ACTION_COMPLETED = "ActionCompleted"
    ACTION_FAILED = "ActionFailed"
    OUTCOME_RECORDED = "OutcomeRecorded"
    PATTERN_EVOLVED = "PatternEvolved"


KNOWN_EVENT_TYPES: Final = frozenset(t.value for t in EventType)

# the source of the monitor agent's own events (health probes, anomalies)
MONITOR_SOURCE: Final = "aiops-monitor"

# an identifier: a letter, then letters, digits, _ . : - (at most 128 characters)
TYPE_NAME_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.:\-]{0,127}$"
_NO_NUL: Final = r"^[^\x00]*$"


def _custom_form(value: object) -> object:
    # The Rust seed serialises EventType::Custom("X") as {"Custom": "X"}; accept that too.
    if type(value) is dict and len(value) == 1 and "Custom" in value:
        return value["Custom"]
    return value


EventTypeName = Annotated[str, BeforeValidator(_custom_form), Field(pattern=TYPE_NAME_PATTERN)]


class Severity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


_SEVERITY_ALIASES: Final = {"warn": "warning", "err": "error", "fatal": "critical"}


def _severity(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        return _SEVERITY_ALIASES.get(lowered, lowered)
    return value


class Event(BaseModel):
    """One event: the seed's Event plus optional service and severity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    event_type: EventTypeName
    # no NUL: PostgreSQL's text cannot hold it
    source: str = Field(min_length=1, max_length=256, pattern=_NO_NUL)
    payload: dict[str, Any] = Field(default_factory=dict)
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    service: str | None = Field(default=None, min_length=1, max_length=256, pattern=_NO_NUL)
    severity: Annotated[Severity | None, BeforeValidator(_severity)] = None
    # Set by `aiops events replay`: the event was stored before and is published again.
    replay: bool = False
    # W3C trace context of the publisher (set by EventMesh.publish inside a span), so the
    # incident an event opens continues the publisher's trace.
    traceparent: str | None = Field(default=None, max_length=128)

    @field_validator("payload")
    @classmethod
    def _storable_payload(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # PostgreSQL's jsonb refuses NaN, Infinity and \u0000; one such event must not fail
        # the COPY of a whole batch. decode_entry has looked at the raw JSON already (the
        # hot path); otherwise the serialised form finds candidates cheaply. The walk
        # decides, since the same letters inside a string are harmless (NUL aside).
        if info.context is _RAW_CLEAN:
            return value
        if _suspect(to_json(value)):
            _check_storable(value, "payload")
        return value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # A timestamp without an offset is taken as UTC rather than the listener's zone.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @property
    def is_custom(self) -> bool:
        return self.event_type not in KNOWN_EVENT_TYPES

    def to_wire(self) -> bytes:
        """The JSON held in the stream entry's ``event`` field."""
        return self.model_dump_json(
            exclude_none=True, exclude=None if self.replay else {"replay"}
        ).encode()


# validation context from decode_entry: the raw JSON holds no NaN, Infinity or \u0000
_RAW_CLEAN: Final[dict[str, bool]] = {"raw_clean": True}


def _suspect(data: bytes) -> bool:
    return b"NaN" in data or b"Infinity" in data or b"\\u0000" in data


def _check_storable(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} is {value}: JSON has no NaN or Infinity")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{path} contains a NUL character, which PostgreSQL cannot store")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, f"{path} key")
            _check_storable(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{path}[{index}]")


class InvalidEvent(ValueError):
    """A stream entry that is not a valid event; the reason goes to the dead-letter stream."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(event: Event) -> dict[str, bytes]:
    """The stream entry's fields for an event."""
    return {WIRE_FIELD: event.to_wire()}


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in item["loc"]) or "event"
        parts.append(f"{loc}: {item['msg']}")
    more = error.error_count() - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def decode_entry(
    stream: str, entry_id: str, fields: Mapping[bytes, bytes], max_bytes: int
) -> Event:
    """Validate one stream entry; raise InvalidEvent with a reason a person can act on."""
    raw = fields.get(_WIRE_FIELD_BYTES)
    if raw is None:
        names = ", ".join(sorted(k.decode("utf-8", "replace") for k in fields)) or "none"
        raise InvalidEvent(f"no '{WIRE_FIELD}' field in the entry (fields: {names})")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"event is {len(raw)} bytes, over the limit of {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent(f"event is not UTF-8: {error.reason} at byte {error.start}") from None
    try:
        event = Event.model_validate_json(text, context=None if _suspect(raw) else _RAW_CLEAN)
    except ValidationError as error:
        raise InvalidEvent(_describe(error)) from None
    given = event.model_fields_set
    if "id" in given and "timestamp" in given:
        return event
    # Left out: derived from the entry, so every delivery of it yields the same event.
    derived: dict[str, object] = {}
    if "id" not in given:
        derived["id"] = uuid.uuid5(ENTRY_NAMESPACE, f"{stream}/{entry_id}")
    if "timestamp" not in given:
        millis = int(entry_id.split("-", 1)[0])
        derived["timestamp"] = datetime.fromtimestamp(millis / 1000, UTC)
    return event.model_copy(update=derived)


# sources aiops' own agents publish under; nobody else may use them (the API refuses them)
RESERVED_SOURCE_PREFIX: Final = "aiops-"


def is_reserved_source(source: str) -> bool:
    """aiops, aiops-monitor, aiops-healer...: what aiops's own agents publish under."""
    name = source.strip().lower()
    return name == RESERVED_SOURCE_PREFIX.rstrip("-") or name.startswith(RESERVED_SOURCE_PREFIX)
