"""Patterns compiled once into an index, so an event is checked only against the patterns
that could match it.

Paths. A rule's field is a dot-path. Its first segment names an envelope field
(event_type, source, service, severity, id, timestamp, correlation_id, causation_id,
replay, payload) or else a payload key: ``memory_usage`` is ``payload.memory_usage``, as
in the seed's JSON. Payload keys that contain a dot cannot be addressed. A pattern's
``service`` applies it to events whose service (else source) is that name.

Missing fields. An unset optional envelope field (service, severity, correlation_id,
causation_id) is missing; a payload key present with null is present, with value None.
Every rule on a missing field fails except ``exists`` with value false, which holds
exactly when the field is missing. ``not_equals`` needs the field: to match absence, say
``exists: false``.

Types, strictly, with no coercion:

* numbers are int and float (85 equals 85.0); booleans are not numbers (true is not 1);
* ``greater_than``, ``less_than``, ``gte``, ``lte`` take a number and hold only for a
  number: the string "85" is not greater than 80, None and lists are never compared;
* ``equals`` / ``not_equals`` compare by type and value, lists and objects element by
  element with the same rules ("85" is not 85, [1, 2] equals [1.0, 2]);
* ``contains``: a substring of a string (the rule's value must be a string), an element
  of a list, or a key of an object; anything else fails;
* ``regex``: ``re.search`` on a string value; other types fail;
* ``in``: the rule's value is a list, the field's value one of its elements;
* ``exists``: value true (or null) for present, false for missing.

A rule that cannot hold for any event (an ordered comparison with a string, ``in`` with
something not a list, a regex that does not compile) is refused at compile time with
PatternError rather than silently never matching.

The index. Patterns are bucketed by event type (the empty list means every type). In a
bucket, each pattern is filed under one anchor rule, the most selective it has: an
equality (a hash lookup on the event's value), else a numeric threshold (a bisection over
thresholds sorted per path and operator: only the patterns whose threshold the value
passes come out), else any other rule, evaluated once for all the patterns that share it
(the same regex on 500 patterns runs once per event). An event looks up only the paths it
has among those some rule reads, so it meets only patterns whose anchor already holds;
the remaining rules of those are then checked.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiops.events.envelope import Event
from aiops.patterns.errors import PatternError
from aiops.patterns.models import MatchingRule, Operator, Pattern, PatternStatus


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

ENVELOPE_FIELDS: Final = frozenset(
    {
        "id",
        "timestamp",
        "event_type",
        "source",
        "service",
        "severity",
        "correlation_id",
        "causation_id",
        "replay",
        "payload",
    }
)
# the pattern's own `service`: the event's service, else its source (as detection has it)
EFFECTIVE_SERVICE: Final = "@service"

_NUMBER: Final = frozenset({int, float})
_ORDERED: Final = frozenset({Operator.GREATER_THAN, Operator.GTE, Operator.LESS_THAN, Operator.LTE})

Test = Callable[[Any], bool]


def canonical_path(name: str) -> str:
    """The full dot-path of a rule's field: ``memory_usage`` -> ``payload.memory_usage``."""
    parts = name.strip().split(".")
    if not name.strip() or any(not part for part in parts):
        raise PatternError(f"field {name!r} is not a dot-path such as payload.memory_usage")
    if parts[0] == "payload" or parts[0] in ENVELOPE_FIELDS:
        if parts[0] != "payload" and len(parts) > 1:
            raise PatternError(f"field {name!r}: the envelope field {parts[0]} has no sub-fields")
        return ".".join(parts)
    return "payload." + ".".join(parts)


def is_number(value: object) -> bool:
    return type(value) in _NUMBER


def eq_key(value: object) -> object:
    """A hash key under which equal values (by this module's rules) meet, or None for
    lists and objects. Strings are their own key; the tuples keep 1, True and "1" apart."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is float:
        return (0, value)
    if kind is bool:
        return (1, value)
    if value is None:
        return (2,)
    return None


def strict_equal(a: object, b: object) -> bool:
    ta, tb = type(a), type(b)
    if ta in _NUMBER and tb in _NUMBER:
        return a == b
    if ta is not tb:
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    return a == b


# --- rules -----------------------------------------------------------------------------


def _equals_test(expected: object) -> Test:
    kind = type(expected)
    if kind in _NUMBER:
        return lambda v: type(v) in _NUMBER and v == expected
    if kind is str:
        return lambda v: type(v) is str and v == expected
    if kind is bool or expected is None:
        return lambda v: v is expected
    return lambda v: v is not MISSING and strict_equal(v, expected)


def _contains_test(expected: object) -> Test:
    def test(v: Any) -> bool:
        kind = type(v)
        if kind is str:
            return type(expected) is str and expected in v
        if kind is list:
            return any(strict_equal(item, expected) for item in v)
        if kind is dict:
            return type(expected) is str and expected in v
        return False

    return test


def _in_test(members: list[Any]) -> Test:
    keys = {k for k in map(eq_key, members) if k is not None}
    structured = [m for m in members if eq_key(m) is None]

    def test(v: Any) -> bool:
        if v is MISSING:
            return False
        key = eq_key(v)
        if key is not None:
            return key in keys
        return any(strict_equal(v, m) for m in structured)

    return test


def _ordered_test(op: Operator, threshold: float) -> Test:
    if op is Operator.GREATER_THAN:
        return lambda v: type(v) in _NUMBER and v > threshold
    if op is Operator.GTE:
        return lambda v: type(v) in _NUMBER and v >= threshold
    if op is Operator.LESS_THAN:
        return lambda v: type(v) in _NUMBER and v < threshold
    return lambda v: type(v) in _NUMBER and v <= threshold


@dataclass(frozen=True, slots=True)
class CompiledRule:
    path: str
    operator: Operator
    value: Any
    test: Test
    # False only for `exists: false`: the rule holds on a missing field
    needs_field: bool


def compile_rule(rule: MatchingRule) -> CompiledRule:
    path = canonical_path(rule.field)
    op, value = rule.operator, rule.value
    where = f"rule {rule.field} {op.value} {value!r}"
    if op in _ORDERED:
        if not is_number(value):
            raise PatternError(f"{where}: {op.value} takes a number, got {type(value).__name__}")
        return CompiledRule(path, op, value, _ordered_test(op, value), True)
    if op is Operator.EQUALS:
        return CompiledRule(path, op, value, _equals_test(value), True)
    if op is Operator.NOT_EQUALS:
        same = _equals_test(value)
        return CompiledRule(path, op, value, lambda v: v is not MISSING and not same(v), True)
    if op is Operator.CONTAINS:
        if value is None:
            raise PatternError(f"{where}: contains needs a value")
        return CompiledRule(path, op, value, _contains_test(value), True)
    if op is Operator.REGEX:
        if type(value) is not str:
            raise PatternError(f"{where}: regex takes a string pattern")
        try:
            search = re.compile(value).search
        except re.error as error:
            raise PatternError(f"{where}: invalid regex: {error}") from None
        return CompiledRule(
            path, op, value, lambda v: type(v) is str and search(v) is not None, True
        )
    if op is Operator.IN:
        if type(value) is not list:
            raise PatternError(f"{where}: in takes a list of values")
        return CompiledRule(path, op, value, _in_test(value), True)
    # EXISTS
    if value is None or value is True:
        return CompiledRule(path, op, True, lambda v: v is not MISSING, True)
    if value is False:
        return CompiledRule(path, op, False, lambda v: v is MISSING, False)
    raise PatternError(f"{where}: exists takes true or false")


# --- compiled patterns -----------------------------------------------------------------


@dataclass(eq=False, slots=True)
class CompiledPattern:
    id: str
    pattern: Pattern
    rules: tuple[CompiledRule, ...]
    # the rules still to check once the anchor holds: (path, test) for the hot loop
    rest: tuple[tuple[str, Test], ...] = ()

    def holds(self, view: dict[str, Any]) -> bool:
        """Every rule holds (the naive check, without the index)."""
        return all(rule.test(view.get(rule.path, MISSING)) for rule in self.rules)


def compile_pattern(pattern_id: str, pattern: Pattern) -> CompiledPattern:
    try:
        rules = [compile_rule(rule) for rule in pattern.matching_rules]
    except PatternError as error:
        raise PatternError(f"pattern {pattern_id} ({pattern.description!r}): {error}") from None
    if pattern.service is not None:
        rules.append(
            CompiledRule(
                EFFECTIVE_SERVICE,
                Operator.EQUALS,
                pattern.service,
                _equals_test(pattern.service),
                True,
            )
        )
    if not rules and not pattern.event_types:
        raise PatternError(
            f"pattern {pattern_id} ({pattern.description!r}) has no rules, event types or "
            "service: it would match every event"
        )
    return CompiledPattern(pattern_id, pattern, tuple(rules))


# --- the index -------------------------------------------------------------------------

_EQ: Final = 0
_RANGE: Final = 1
_PRESENT: Final = 2


@dataclass(slots=True)
class _Sorted:
    thresholds: list[float] = field(default_factory=list)
    entries: list[CompiledPattern] = field(default_factory=list)


@dataclass(slots=True)
class _Range:
    gt: _Sorted = field(default_factory=_Sorted)
    gte: _Sorted = field(default_factory=_Sorted)
    lt: _Sorted = field(default_factory=_Sorted)
    lte: _Sorted = field(default_factory=_Sorted)

    def add(self, op: Operator, threshold: float, entry: CompiledPattern) -> None:
        side = {
            Operator.GREATER_THAN: self.gt,
            Operator.GTE: self.gte,
            Operator.LESS_THAN: self.lt,
            Operator.LTE: self.lte,
        }[op]
        side.thresholds.append(threshold)
        side.entries.append(entry)

    def finish(self) -> None:
        for side in (self.gt, self.gte, self.lt, self.lte):
            order = sorted(range(len(side.thresholds)), key=side.thresholds.__getitem__)
            side.thresholds = [side.thresholds[i] for i in order]
            side.entries = [side.entries[i] for i in order]

    def passing(self, value: float, out: list[CompiledPattern]) -> None:
        """Extend out with the entries whose threshold the value passes."""
        s = self.gt
        if s.entries:
            out += s.entries[: bisect.bisect_left(s.thresholds, value)]
        s = self.gte
        if s.entries:
            out += s.entries[: bisect.bisect_right(s.thresholds, value)]
        s = self.lt
        if s.entries:
            out += s.entries[bisect.bisect_right(s.thresholds, value) :]
        s = self.lte
        if s.entries:
            out += s.entries[bisect.bisect_left(s.thresholds, value) :]


@dataclass(slots=True)
class _Shared:
    test: Test
    entries: list[CompiledPattern] = field(default_factory=list)


@dataclass(slots=True)
class _Bucket:
    eq: dict[str, dict[object, list[CompiledPattern]]] = field(default_factory=dict)
    ranges: dict[str, _Range] = field(default_factory=dict)
    # other rules, grouped by (operator, value): a regex shared by 500 patterns runs once
    present: dict[str, dict[str, _Shared]] = field(default_factory=dict)
    # patterns whose every rule holds on missing fields, or that have none
    always: list[CompiledPattern] = field(default_factory=list)

    def candidates(self, view: dict[str, Any], out: list[CompiledPattern]) -> None:
        eq, ranges, present = self.eq, self.ranges, self.present
        for path, value in view.items():
            by_value = eq.get(path)
            if by_value is not None:
                key = eq_key(value)
                if key is not None:
                    found = by_value.get(key)
                    if found is not None:
                        out += found
            if ranges and type(value) in _NUMBER:
                index = ranges.get(path)
                if index is not None:
                    index.passing(value, out)
            shared = present.get(path)
            if shared is not None:
                for group in shared.values():
                    if group.test(value):
                        out += group.entries
        if self.always:
            out += self.always


class _Trie:
    """The dot-paths some rule reads, as a tree of payload keys."""

    __slots__ = ("children", "path")

    def __init__(self) -> None:
        self.path: str | None = None
        self.children: dict[str, _Trie] = {}

    def add(self, parts: Sequence[str], path: str) -> None:
        node = self
        for part in parts:
            node = node.children.setdefault(part, _Trie())
        node.path = path


def _walk(children: dict[str, _Trie], obj: dict[str, Any], out: dict[str, Any]) -> None:
    # iterate the smaller side: a large payload costs what the rules read, not its size
    if len(obj) <= len(children):
        for key, value in obj.items():
            node = children.get(key)
            if node is None:
                continue
            if node.path is not None:
                out[node.path] = value
            if node.children and type(value) is dict:
                _walk(node.children, value, out)
    else:
        for key, node in children.items():
            if key not in obj:
                continue
            value = obj[key]
            if node.path is not None:
                out[node.path] = value
            if node.children and type(value) is dict:
                _walk(node.children, value, out)


def _envelope_value(event: Event, name: str) -> Any:
    if name == EFFECTIVE_SERVICE:
        return event.service or event.source
    value = getattr(event, name)
    if value is None:
        return MISSING
    if name in ("id", "correlation_id", "causation_id"):
        return str(value)
    if name == "timestamp":
        return value.isoformat()
    if name == "severity":
        return value.value
    return value


class PatternMatcher:
    """Active patterns compiled and indexed. Immutable: a reload builds a new one."""

    def __init__(
        self,
        patterns: Iterable[tuple[str, Pattern]],
        *,
        skip_invalid: bool = False,
    ) -> None:
        """Compile the active patterns (retired ones are left out). An invalid pattern
        raises PatternError, or with skip_invalid is left out and listed in `errors`."""
        self.errors: list[str] = []
        compiled: list[CompiledPattern] = []
        for pattern_id, pattern in patterns:
            if pattern.status is not PatternStatus.ACTIVE:
                continue
            try:
                compiled.append(compile_pattern(pattern_id, pattern))
            except PatternError as error:
                if not skip_invalid:
                    raise
                self.errors.append(str(error))
        self.patterns: tuple[CompiledPattern, ...] = tuple(compiled)
        self._by_type: dict[str, _Bucket] = {}
        self._any = _Bucket()
        self._envelope: list[str] = []
        self._payload = _Trie()
        self._build()

    def __len__(self) -> int:
        return len(self.patterns)

    def _build(self) -> None:
        # How often each anchor key occurs across the library: a pattern is filed under
        # its rarest, so a common value (severity equals error) does not fill one list.
        counts: Counter[tuple[object, ...]] = Counter()
        for entry in self.patterns:
            for rule in entry.rules:
                for key in _anchor_keys(rule):
                    counts[key] += 1
        paths: set[str] = set()
        for entry in self.patterns:
            paths.update(rule.path for rule in entry.rules)
            anchor = _choose_anchor(entry.rules, counts)
            # the lookup has checked the anchor rule
            entry.rest = tuple(
                (rule.path, rule.test) for i, rule in enumerate(entry.rules) if i != anchor
            )
            anchor_rule = None if anchor is None else entry.rules[anchor]
            if not entry.pattern.event_types:
                _file(self._any, entry, anchor_rule)
            for event_type in dict.fromkeys(entry.pattern.event_types):
                _file(self._by_type.setdefault(event_type, _Bucket()), entry, anchor_rule)
        for bucket in (self._any, *self._by_type.values()):
            for index in bucket.ranges.values():
                index.finish()
        for path in sorted(paths):
            parts = path.split(".")
            if parts[0] == "payload" and len(parts) > 1:
                self._payload.add(parts[1:], path)
            else:
                self._envelope.append(path)

    def view(self, event: Event) -> dict[str, Any]:
        """The event's values at the paths some rule reads (missing ones left out)."""
        out: dict[str, Any] = {}
        for name in self._envelope:
            value = _envelope_value(event, name)
            if value is not MISSING:
                out[name] = value
        if self._payload.children and event.payload:
            _walk(self._payload.children, event.payload, out)
        return out

    def match(self, event: Event) -> list[CompiledPattern]:
        """Every active pattern whose rules all hold for the event, in no particular order."""
        view = self.view(event)
        candidates: list[CompiledPattern] = []
        bucket = self._by_type.get(event.event_type)
        if bucket is not None:
            bucket.candidates(view, candidates)
        self._any.candidates(view, candidates)
        matched = []
        get = view.get
        for entry in candidates:
            for path, test in entry.rest:
                if not test(get(path, MISSING)):
                    break
            else:
                matched.append(entry)
        return matched

    def scan(self, event: Event) -> list[CompiledPattern]:
        """The same answer as match() by checking every pattern: the baseline the index
        is measured against, and its reference in tests."""
        view = self.view(event)
        return [
            entry
            for entry in self.patterns
            if (not entry.pattern.event_types or event.event_type in entry.pattern.event_types)
            and entry.holds(view)
        ]


def _anchor_keys(rule: CompiledRule) -> list[tuple[object, ...]]:
    if not rule.needs_field:
        return []
    if rule.operator is Operator.EQUALS and eq_key(rule.value) is not None:
        return [(_EQ, rule.path, eq_key(rule.value))]
    if rule.operator is Operator.IN:
        keys = [eq_key(v) for v in rule.value]
        if keys and all(k is not None for k in keys):
            # 1 and 1.0 are one key: filed twice, the pattern would match twice
            return [(_EQ, rule.path, k) for k in dict.fromkeys(keys)]
    if rule.operator in _ORDERED:
        return [(_RANGE, rule.path)]
    return [(_PRESENT, rule.path)]


def _cost(rule: CompiledRule, counts: Counter[tuple[object, ...]]) -> float:
    keys = _anchor_keys(rule)
    if not keys:
        return float("inf")
    total = float(sum(counts[k] for k in keys))
    kind = keys[0][0]
    # a threshold passes about half of its list; presence lets every value through
    if kind == _RANGE:
        return 1 + total / 2
    if kind == _PRESENT:
        return 1 + total
    return total


def _choose_anchor(
    rules: Sequence[CompiledRule], counts: Counter[tuple[object, ...]]
) -> int | None:
    best: int | None = None
    best_cost = float("inf")
    for i, rule in enumerate(rules):
        cost = _cost(rule, counts)
        if cost < best_cost:
            best, best_cost = i, cost
    return best


def _file(bucket: _Bucket, entry: CompiledPattern, rule: CompiledRule | None) -> None:
    if rule is None:
        bucket.always.append(entry)
        return
    keys = _anchor_keys(rule)
    kind = keys[0][0]
    if kind == _EQ:
        by_value = bucket.eq.setdefault(rule.path, {})
        for _, _, key in keys:
            by_value.setdefault(key, []).append(entry)
    elif kind == _RANGE:
        bucket.ranges.setdefault(rule.path, _Range()).add(rule.operator, rule.value, entry)
    else:
        key = f"{rule.operator.value} {json.dumps(rule.value, sort_keys=True)}"
        shared = bucket.present.setdefault(rule.path, {})
        group = shared.get(key)
        if group is None:
            group = shared[key] = _Shared(rule.test)
        group.entries.append(entry)
