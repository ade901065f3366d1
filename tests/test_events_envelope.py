"""The envelope and its wire format: what is accepted, what is refused and why."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiops.events.envelope import (
    ENTRY_NAMESPACE,
    Event,
    EventType,
    InvalidEvent,
    Severity,
    decode_entry,
    encode,
)

LIMIT = 1 << 20


def _decode(raw: bytes, entry_id: str = "1700000000123-4", stream: str = "events:t") -> Event:
    return decode_entry(stream, entry_id, {b"event": raw}, LIMIT)


def test_round_trip_through_the_wire() -> None:
    event = Event(
        event_type=EventType.SERVICE_TIMEOUT,
        source="import-service",
        payload={"duration_s": 30, "nested": {"a": [1, 2.5, None, "x"]}},
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        service="import",
        severity=Severity.ERROR,
    )
    fields = encode(event)
    assert list(fields) == ["event"]
    decoded = decode_entry("events:import", "1-0", {b"event": fields["event"]}, LIMIT)
    assert decoded == event
    assert not decoded.is_custom


def test_minimal_entry_gets_id_and_time_from_the_stream_entry() -> None:
    raw = b'{"event_type": "BookmarkCreated", "source": "bookmarks"}'
    first = _decode(raw)
    again = _decode(raw)
    other_entry = _decode(raw, entry_id="1700000000123-5")
    assert first.id == again.id == uuid.uuid5(ENTRY_NAMESPACE, "events:t/1700000000123-4")
    assert other_entry.id != first.id
    assert first.timestamp == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert first.payload == {}
    assert first.is_custom is False


def test_custom_types_and_the_rust_seed_form() -> None:
    assert _decode(b'{"event_type": "PaymentDeclined", "source": "pay"}').is_custom
    seed_form = _decode(b'{"event_type": {"Custom": "BookmarkImported"}, "source": "b"}')
    assert seed_form.event_type == "BookmarkImported"


def test_naive_timestamp_is_utc_and_offsets_are_kept() -> None:
    naive = _decode(b'{"event_type":"A","source":"s","timestamp":"2026-01-02T03:04:05"}')
    assert naive.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    offset = _decode(b'{"event_type":"A","source":"s","timestamp":"2026-01-02T05:04:05+02:00"}')
    assert offset.timestamp == datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert offset.timestamp == naive.timestamp


def test_severity_aliases() -> None:
    assert _decode(b'{"event_type":"A","source":"s","severity":"WARN"}').severity == "warning"
    assert _decode(b'{"event_type":"A","source":"s","severity":"fatal"}').severity == "critical"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"source": "s"}', "event_type: Field required"),
        (b'{"event_type": "A"}', "source: Field required"),
        (b'{"event_type": "A", "source": ""}', "source: String should have at least 1"),
        (b'{"event_type": 5, "source": "s"}', "event_type"),
        (b'{"event_type": "has space", "source": "s"}', "event_type: String should match"),
        (b'{"event_type": "A", "source": "s", "payload": [1]}', "payload: Input should be"),
        (b'{"event_type": "A", "source": "s", "id": "nope"}', "id: Input should be a valid UUID"),
        (b'{"event_type": "A", "source": "s", "timestamp": "yesterday"}', "timestamp"),
        (b'{"event_type": "A", "source": "s", "severity": "meh"}', "severity"),
        (b'{"event_type": "A", "source": "s", "correlationId": "x"}', "correlationId: Extra"),
        (b'{"event_type": "A", "source": "s", "payload": {"x": NaN}}', "NaN or Infinity"),
        (b'{"event_type": "A", "source": "s", "payload": {"x": "a\\u0000"}}', "NUL"),
        (b'{"event_type": "A", "source": "s\\u0000"}', "source: String should match"),
        (b'["event_type", "A"]', "Input should be an object"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_invalid_entries_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        _decode(raw)
    assert reason in caught.value.reason


def test_missing_field_and_size_limit() -> None:
    with pytest.raises(InvalidEvent, match=r"no 'event' field in the entry \(fields: data\)"):
        decode_entry("s", "1-0", {b"data": b"{}"}, LIMIT)
    big = json.dumps({"event_type": "A", "source": "s", "payload": {"x": "y" * 2000}}).encode()
    with pytest.raises(InvalidEvent, match=f"event is {len(big)} bytes, over the limit of 1024"):
        decode_entry("s", "1-0", {b"event": big}, 1024)
    assert decode_entry("s", "1-0", {b"event": big}, len(big)).payload["x"] == "y" * 2000


def test_payload_strings_that_look_like_nan_are_fine() -> None:
    event = _decode(b'{"event_type":"A","source":"s","payload":{"x":"NaN","y":"Infinity"}}')
    assert event.payload == {"x": "NaN", "y": "Infinity"}


def test_replay_flag_only_on_the_wire_when_set() -> None:
    plain = Event(event_type="A", source="s")
    assert b"replay" not in plain.to_wire()
    marked = plain.model_copy(update={"replay": True})
    assert _decode(marked.to_wire()).replay is True


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_are_refused_or_valid(raw: bytes) -> None:
    try:
        event = _decode(raw)
    except InvalidEvent as error:
        assert error.reason
    else:
        assert isinstance(event, Event)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["id", "timestamp", "event_type", "source", "payload", "severity", "service", "x"]
        ),
        _json,
        max_size=8,
    )
)
def test_fuzz_json_objects_are_refused_or_storable(data: dict[str, object]) -> None:
    raw = json.dumps(data, allow_nan=True).encode("utf-8", "surrogatepass")
    try:
        event = _decode(raw)
    except InvalidEvent as error:
        assert error.reason
        return
    # what is accepted must survive the wire again and be storable text
    assert _decode(event.to_wire()) == event
    assert "\x00" not in json.dumps(event.payload)
    json.dumps(event.payload, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    event_type=st.sampled_from([t.value for t in EventType])
    | st.from_regex(r"[A-Za-z][A-Za-z0-9_.:\-]{0,20}", fullmatch=True),
    source=st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s),
    payload=st.dictionaries(
        st.text(max_size=10).filter(lambda s: "\x00" not in s),
        st.integers() | st.text(max_size=20).filter(lambda s: "\x00" not in s),
        max_size=5,
    ),
)
def test_fuzz_valid_events_round_trip(
    event_type: str, source: str, payload: dict[str, object]
) -> None:
    try:
        event = Event(event_type=event_type, source=source, payload=payload)
    except ValueError:
        return  # lone surrogates and the like: refused at construction
    assert _decode(event.to_wire()) == event
