"""CloudEvents 1.0 over HTTP, parsed by the official `cloudevents` SDK (v2 core API).

Structured mode (Content-Type: application/cloudevents+json) and binary mode (the
attributes in ce-* headers, the data in the body) are told apart and read by
`cloudevents.core.bindings.http.from_http`. A batch (application/cloudevents-batch+json,
a JSON array of structured events) is split here and each element read by the SDK's
JSON format, since the SDK has no batch reader.

Mapping: type -> event_type (made a valid type name), source -> source, subject ->
service, time -> timestamp, data -> payload (data that is not a JSON object becomes
{"data": ...}; binary data {"data_base64": ...}), id -> payload.cloudevent_id and, when it
is a UUID, the event id (else a UUIDv5 of source and id: the spec makes that pair unique,
so a redelivery is stored once). A `severity` extension attribute, when it names a known
severity, is the event's severity.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat

from aiops.events.envelope import Event
from aiops.intake.alerts import (
    INTAKE_NAMESPACE,
    IntakeError,
    build_event,
    event_type_name,
    severity_of,
)

STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"
_FORMAT: Final = JSONFormat()


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _error(loc: list[str | int], error: Exception) -> IntakeError:
    if isinstance(error, CloudEventValidationError):
        return IntakeError(
            [
                {
                    "loc": [*loc, attribute],
                    "msg": "; ".join(str(e) for e in problems),
                    "type": "cloudevent_attribute",
                }
                for attribute, problems in error.errors.items()
            ]
        )
    return IntakeError([{"loc": loc, "msg": f"not a CloudEvent: {error}", "type": "cloudevent"}])


# what the SDK raises on bad input: its own errors, JSON and date errors (ValueError), a
# body that is JSON but no object (AttributeError, TypeError)
_BAD_INPUT: Final = (BaseCloudEventException, ValueError, TypeError, AttributeError, KeyError)


def parse(headers: Mapping[str, str], body: bytes) -> list[BaseCloudEvent]:
    """The CloudEvents a request carries (one, or a batch's); IntakeError says why not.
    `headers` must have lower-case names (as Starlette's have)."""
    if _media_type(headers) == BATCH:
        try:
            items = json.loads(body)
        except ValueError as error:
            raise _error(["body"], error) from None
        if not isinstance(items, list):
            raise IntakeError(
                [{"loc": ["body"], "msg": "a batch is a JSON array of events", "type": "list_type"}]
            )
        found = []
        for index, item in enumerate(items):
            try:
                found.append(_FORMAT.read(None, json.dumps(item)))
            except _BAD_INPUT as error:
                raise _error(["body", index], error) from None
        return found
    try:
        return [from_http(HTTPMessage(headers=dict(headers), body=body), _FORMAT)]
    except _BAD_INPUT as error:
        raise _error(["body"], error) from None


def _payload(data: object, cloudevent_id: str) -> dict[str, Any]:
    if isinstance(data, dict):
        payload = dict(data)
    elif data is None:
        payload = {}
    elif isinstance(data, bytes | bytearray):
        payload = {"data_base64": base64.b64encode(bytes(data)).decode()}
    else:
        payload = {"data": data}
    payload["cloudevent_id"] = cloudevent_id
    return payload


def event_id(source: str, cloudevent_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(cloudevent_id)
    except ValueError:
        return uuid.uuid5(INTAKE_NAMESPACE, f"cloudevents\x00{source}\x00{cloudevent_id}")


def to_event(cloudevent: BaseCloudEvent, index: int = 0) -> Event:
    source = cloudevent.get_source()
    cloudevent_id = cloudevent.get_id()
    time = cloudevent.get_time()
    try:
        severity = severity_of(cloudevent.get_extension("severity"))
    except (KeyError, AttributeError):
        severity = None
    return build_event(
        ("body", index),
        id=event_id(source, cloudevent_id),
        timestamp=time if isinstance(time, datetime) else datetime.now(UTC),
        event_type=event_type_name(cloudevent.get_type()),
        source=source,
        service=cloudevent.get_subject() or None,
        severity=severity,
        payload=_payload(cloudevent.get_data(), cloudevent_id),
    )
