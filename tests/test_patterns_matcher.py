"""The compiled matcher: every operator, the documented semantics for missing fields and
type mismatches, and the index agreeing with a scan of every pattern."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiops.events.envelope import Event
from aiops.patterns.errors import PatternError
from aiops.patterns.matcher import PatternMatcher, canonical_path
from aiops.patterns.models import MatchingRule, Operator, Pattern, PatternStatus


def pattern(*rules: tuple[str, str, Any], **extra: Any) -> Pattern:
    return Pattern(
        description=extra.pop("description", "p"),
        matching_rules=[MatchingRule(field=f, operator=Operator(o), value=v) for f, o, v in rules],
        **extra,
    )


def event(payload: dict[str, Any] | None = None, **kw: Any) -> Event:
    return Event(
        event_type=kw.pop("event_type", "MetricReport"),
        source=kw.pop("source", "api"),
        payload=payload or {},
        **kw,
    )


def matches(p: Pattern, e: Event) -> bool:
    matcher = PatternMatcher([("x", p)])
    found = bool(matcher.match(e))
    assert found == bool(matcher.scan(e)), "index and scan disagree"
    return found


def test_paths_default_to_the_payload() -> None:
    assert canonical_path("memory_usage") == "payload.memory_usage"
    assert canonical_path("payload.http.status") == "payload.http.status"
    assert canonical_path("service") == "service"
    with pytest.raises(PatternError, match="not a dot-path"):
        canonical_path("a..b")
    with pytest.raises(PatternError, match="no sub-fields"):
        canonical_path("service.name")


@pytest.mark.parametrize(
    ("op", "value", "observed", "expected"),
    [
        ("greater_than", 80, 85, True),
        ("greater_than", 80, 80, False),
        ("greater_than", 80, 80.5, True),
        ("greater_than", 80, "85", False),  # no coercion: a string is not a number
        ("greater_than", 80, None, False),
        ("greater_than", 80, [90], False),
        ("greater_than", 0, True, False),  # booleans are not numbers
        ("gte", 80, 80, True),
        ("less_than", 10, 9.99, True),
        ("lte", 10, 10.0, True),
        ("lte", 10, 10.01, False),
        ("equals", 85, 85.0, True),
        ("equals", 85, "85", False),
        ("equals", "85", 85, False),
        ("equals", 1, True, False),
        ("equals", True, 1, False),
        ("equals", None, None, True),
        ("equals", [1, 2], [1.0, 2], True),
        ("equals", [1, 2], [2, 1], False),
        ("equals", {"a": 1}, {"a": 1}, True),
        ("not_equals", "x", "y", True),
        ("not_equals", "x", "x", False),
        ("not_equals", 85, "85", True),
        ("contains", "refused", "connection refused", True),
        ("contains", "refused", ["refused"], True),
        ("contains", 3, [1, 2, 3.0], True),
        ("contains", "a", {"a": 1}, True),
        ("contains", "5", 85, False),
        ("regex", r"^ERR\d+", "ERR42 boom", True),
        ("regex", r"\d+", 42, False),
        ("in", ["a", "b"], "a", True),
        ("in", [1, 2], 2.0, True),
        ("in", [1, 2], "1", False),
        ("in", [[1], [2]], [2], True),
        ("exists", True, None, True),  # present with null is present
        ("exists", False, None, False),
    ],
)
def test_operator_semantics(op: str, value: Any, observed: Any, expected: bool) -> None:
    p = pattern(("payload.v", op, value))
    assert matches(p, event({"v": observed})) is expected


def test_missing_fields_fail_every_rule_but_exists_false() -> None:
    e = event({"other": 1})
    for op, value in [
        ("equals", None),
        ("not_equals", "x"),
        ("greater_than", 0),
        ("contains", "x"),
        ("regex", "."),
        ("in", [None]),
        ("exists", True),
    ]:
        assert not matches(pattern(("v", op, value)), e), op
    assert matches(pattern(("v", "exists", False)), e)
    assert not matches(pattern(("v", "exists", False)), event({"v": None}))
    # a path through something that is not an object is missing too
    assert not matches(pattern(("a.b", "exists", True)), event({"a": "text"}))
    assert matches(pattern(("a.b", "equals", 1)), event({"a": {"b": 1}}))


def test_envelope_fields_and_the_pattern_service() -> None:
    e = event({"m": 1}, event_type="ServiceError", severity="error", source="billing")
    assert matches(pattern(("event_type", "equals", "ServiceError")), e)
    assert matches(pattern(("severity", "in", ["error", "critical"])), e)
    assert matches(pattern(("source", "regex", "^bill")), e)
    assert not matches(pattern(("service", "exists", True)), e)  # unset: missing
    assert matches(pattern(("m", "exists", True), service="billing"), e)  # service or source
    assert not matches(pattern(("m", "exists", True), service="api"), e)
    assert matches(pattern(("m", "exists", True), service="api"), event({"m": 1}, service="api"))


def test_event_types_and_all_rules_must_hold() -> None:
    p = pattern(("cpu", "greater_than", 90), ("host", "equals", "a"), event_types=["MetricReport"])
    assert matches(p, event({"cpu": 95, "host": "a"}))
    assert not matches(p, event({"cpu": 95, "host": "b"}))
    assert not matches(p, event({"cpu": 95, "host": "a"}, event_type="Anomaly"))
    only_type = Pattern(description="every anomaly", event_types=["Anomaly"])
    assert matches(only_type, event(event_type="Anomaly"))
    assert not matches(only_type, event())


def test_invalid_patterns_are_refused_with_a_reason() -> None:
    cases = [
        (pattern(("v", "greater_than", "80")), "takes a number"),
        (pattern(("v", "regex", "(")), "invalid regex"),
        (pattern(("v", "in", "abc")), "takes a list"),
        (pattern(("v", "exists", "yes")), "true or false"),
        (Pattern(description="anything"), "would match every event"),
    ]
    for p, reason in cases:
        with pytest.raises(PatternError, match=reason):
            PatternMatcher([("bad", p)])
    lenient = PatternMatcher(
        [("bad", cases[0][0]), ("ok", pattern(("v", "exists", True)))], skip_invalid=True
    )
    assert len(lenient) == 1 and "bad" in lenient.errors[0]


def test_retired_patterns_are_left_out() -> None:
    retired = pattern(("v", "exists", True), status=PatternStatus.RETIRED)
    assert len(PatternMatcher([("r", retired)])) == 0


def test_the_index_checks_only_candidates() -> None:
    # 2,000 patterns on other services and thresholds: an event meets only its own
    library = [
        (f"s{i}", pattern(("cpu", "greater_than", i % 100), service=f"svc-{i}"))
        for i in range(1000)
    ] + [
        (f"t{i}", pattern(("latency_ms", "greater_than", i), event_types=["Latency"]))
        for i in range(1000)
    ]
    matcher = PatternMatcher(library)
    hit = matcher.match(event({"cpu": 50}, service="svc-7"))
    assert [m.id for m in hit] == ["s7"]
    slow = matcher.match(event({"latency_ms": 10}, event_type="Latency"))
    assert sorted(m.id for m in slow) == sorted(f"t{i}" for i in range(10))


_FIELDS = ["a", "b", "c.d", "severity", "source"]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 1.0, 2.5]),
    st.sampled_from(["x", "y", "1", "xy"]),
    st.lists(st.integers(-1, 2), max_size=2),
)


def _rule_value(op: Operator, draw: Any) -> Any:
    if op in (Operator.GREATER_THAN, Operator.LESS_THAN, Operator.GTE, Operator.LTE):
        return draw(st.sampled_from([-1, 0, 1, 1.5, 2]))
    if op is Operator.REGEX:
        return draw(st.sampled_from(["x", "^y", "1$"]))
    if op is Operator.IN:
        return draw(st.lists(_VALUES, max_size=3))
    if op is Operator.EXISTS:
        return draw(st.booleans())
    if op is Operator.CONTAINS:
        return draw(st.sampled_from(["x", 1, "1"]))
    return draw(_VALUES)


@st.composite
def libraries(draw: Any) -> list[tuple[str, Pattern]]:
    out = []
    for i in range(draw(st.integers(1, 25))):
        rules = []
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(list(Operator)))
            rules.append((draw(st.sampled_from(_FIELDS)), op.value, _rule_value(op, draw)))
        types = draw(st.sampled_from([[], ["A"], ["A", "B"]]))
        out.append((str(i), pattern(*rules, event_types=types)))
    return out


@st.composite
def events(draw: Any) -> Event:
    payload: dict[str, Any] = {}
    for name in ("a", "b"):
        if draw(st.booleans()):
            payload[name] = draw(_VALUES)
    if draw(st.booleans()):
        payload["c"] = draw(st.one_of(_VALUES, st.fixed_dictionaries({"d": _VALUES})))
    return Event(
        event_type=draw(st.sampled_from(["A", "B", "C"])),
        source=draw(st.sampled_from(["x", "y"])),
        severity=draw(st.sampled_from([None, "error", "info"])),
        payload=payload,
    )


@settings(max_examples=300, deadline=None)
@given(libraries(), st.lists(events(), min_size=1, max_size=10))
def test_index_agrees_with_scanning_every_pattern(
    library: list[tuple[str, Pattern]], sample: list[Event]
) -> None:
    matcher = PatternMatcher(library)
    for e in sample:
        assert sorted(m.id for m in matcher.match(e)) == sorted(m.id for m in matcher.scan(e))


def test_index_agrees_with_scan_on_a_large_random_library() -> None:
    rng = random.Random(7)
    ops = ["greater_than", "less_than", "gte", "lte", "equals", "in"]
    library = []
    for i in range(3000):
        op = rng.choice(ops)
        value: Any = [rng.randint(0, 9), rng.randint(0, 9)] if op == "in" else rng.randint(0, 9)
        rules = [(f"m{rng.randint(0, 5)}", op, value)]
        if rng.random() < 0.5:
            rules.append(("host", "equals", f"h{rng.randint(0, 3)}"))
        library.append((str(i), pattern(*rules, event_types=rng.choice([[], ["M"], ["N"]]))))
    matcher = PatternMatcher(library)
    for _ in range(300):
        payload: dict[str, Any] = {
            f"m{k}": rng.randint(0, 9) for k in range(6) if rng.random() < 0.5
        }
        payload["host"] = f"h{rng.randint(0, 3)}"
        e = event(payload, event_type=rng.choice(["M", "N", "O"]))
        assert sorted(m.id for m in matcher.match(e)) == sorted(m.id for m in matcher.scan(e))
