"""Evolution proposals from recorded outcomes (pure: the evolver feeds them from the
database).

1. Threshold search: for each field the pattern compares with a number, the outcomes are
   laid out along that field and segmented by action (aiops.patterns.segmentation); the
   field whose segmentation beats the pattern as it is by the most wins, and each
   labelled segment becomes a pattern with that action and that range. This moves a
   threshold (one segment), or splits the pattern ("restart above 80" becomes "scale
   from 70 to 85" and "restart above 85" when restarts failed below 85 and scaling
   worked there). A segment at an outer end keeps the original bound on that side
   (none, when the original is open there), widened to the outcomes seen beyond it.
2. Otherwise, action swap: the action with the best success posterior (mean of
   Beta(1 + s, 1 + f)) among the pattern's own outcomes and the solutions of the
   problems it triggers (and the solution it leads to) replaces the pattern's, when it
   beats the current one. The graph's record counts only for actions the pattern has no
   outcomes of: what happened under this pattern is the better evidence.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from aiops.patterns.matcher import canonical_path, compile_rule, is_number
from aiops.patterns.models import MatchingRule, Operator, Pattern, PatternStatus
from aiops.patterns.segmentation import DEFAULT_COST, Point, Segment, score, segment
from aiops.policy.models import ActionSpec

SUCCESS_THRESHOLD: Final = 0.7
_LOWER: Final = (Operator.GREATER_THAN, Operator.GTE)
_UPPER: Final = (Operator.LESS_THAN, Operator.LTE)


class Outcome(BaseModel):
    success: bool
    actions: list[ActionSpec] = Field(default_factory=list)
    solution_id: str | None = None
    observed: dict[str, Any] = Field(default_factory=dict)


def action_key(actions: list[ActionSpec]) -> str:
    """The identity of what was done: two solutions doing the same thing are one action."""
    ordered = sorted(actions, key=lambda a: (a.order, a.action_type, a.target))
    return json.dumps(
        [a.model_dump(mode="json") for a in ordered], sort_keys=True, separators=(",", ":")
    )


def describe_actions(actions: list[ActionSpec]) -> str:
    if not actions:
        return "no action"
    return ", then ".join(a.action_type for a in sorted(actions, key=lambda a: a.order))


def posterior(successes: int, failures: int) -> float:
    return (1 + successes) / (2 + successes + failures)


Kind = Literal["split", "threshold", "threshold_and_action", "action"]


class SegmentSummary(BaseModel):
    actions: list[ActionSpec] | None = Field(description="None: no action worth taking here")
    low: float
    high: float
    successes: int
    failures: int


class EvolutionProposal(BaseModel):
    pattern_id: str
    kind: Kind
    reason: str
    field: str | None = None
    segments: list[SegmentSummary] = Field(default_factory=list)
    patterns: list[Pattern]
    outcomes: int
    success_rate_before: float
    expected_success_rate: float = Field(
        description="posterior mean of the new patterns' actions on the recorded outcomes"
    )


class EvolutionResult(BaseModel):
    proposal: EvolutionProposal
    old_id: str
    new_ids: list[str]
    event_id: str | None = None


class Candidate(BaseModel):
    actions: list[ActionSpec]
    successes: int
    failures: int
    source: str

    @property
    def posterior(self) -> float:
        return posterior(self.successes, self.failures)


def _base_description(pattern: Pattern) -> str:
    return pattern.description.split(" — evolved: ")[0]


def _number_text(value: float) -> str:
    return f"{value:g}"


def _bounds_text(rules: list[MatchingRule]) -> str:
    symbols = {
        Operator.GREATER_THAN: ">",
        Operator.GTE: ">=",
        Operator.LESS_THAN: "<",
        Operator.LTE: "<=",
    }
    return " and ".join(
        f"{r.field} {symbols[r.operator]} {_number_text(r.value)}"
        for r in rules
        if r.operator in symbols
    )


def _evolved(
    old: Pattern,
    old_id: str,
    rules: list[MatchingRule],
    actions: list[ActionSpec],
    confidence: float,
    what: str,
) -> Pattern:
    return old.model_copy(
        update={
            "description": f"{_base_description(old)} — evolved: {what}",
            "matching_rules": rules,
            "actions": actions,
            "confidence": round(min(1.0, max(0.0, confidence)), 4),
            "success_rate": 0.0,
            "attempt_count": 0,
            "success_count": 0,
            "occurrences": 0,
            "status": PatternStatus.ACTIVE,
            "evolved_from": old_id,
            "retired_reason": None,
        },
        deep=True,
    )


def _admits(rule: MatchingRule, value: float) -> bool:
    return compile_rule(rule).test(value)


def _split_proposal(
    pattern_id: str,
    pattern: Pattern,
    outcomes: list[Outcome],
    cost: float,
    rate: float,
) -> EvolutionProposal | None:
    current = action_key(pattern.actions)
    best: tuple[float, str, list[Segment], list[Point]] | None = None
    fields = dict.fromkeys(
        canonical_path(r.field)
        for r in pattern.matching_rules
        if r.operator in (*_LOWER, *_UPPER) and is_number(r.value)
    )
    for path in fields:
        points = [
            Point(float(o.observed[path]), action_key(o.actions), o.success)
            for o in outcomes
            if is_number(o.observed.get(path))
        ]
        if len({p.value for p in points}) < 2:
            continue
        limits = [
            compile_rule(r)
            for r in pattern.matching_rules
            if canonical_path(r.field) == path and r.operator in (*_LOWER, *_UPPER)
        ]

        def as_is(value: float, limits: list[Any] = limits) -> str | None:
            return current if all(b.test(value) for b in limits) else None

        found = segment(points, cost)
        gain = found.objective - score(points, as_is, cost)
        if gain > 0 and (best is None or gain > best[0]):
            best = (gain, path, found.segments, points)
    if best is None:
        return None
    _, path, segments, points = best
    labelled = [s for s in segments if s.label is not None]
    if not labelled:
        return None
    actions_of = {action_key(o.actions): o.actions for o in outcomes}
    field_rules = [r for r in pattern.matching_rules if canonical_path(r.field) == path]
    lower = [r for r in field_rules if r.operator in _LOWER]
    upper = [r for r in field_rules if r.operator in _UPPER]
    kept = [
        r
        for r in pattern.matching_rules
        if not (canonical_path(r.field) == path and r.operator in (*_LOWER, *_UPPER))
    ]
    name = next(r.field for r in field_rules)
    new_patterns: list[Pattern] = []
    for index, seg in enumerate(segments):
        if seg.label is None:
            continue
        bounds: list[MatchingRule] = []
        if index > 0:
            bounds.append(
                MatchingRule(
                    field=name, operator=Operator.GREATER_THAN, value=segments[index - 1].high
                )
            )
        elif lower:
            bounds += (
                lower
                if all(_admits(r, seg.low) for r in lower)
                else [MatchingRule(field=name, operator=Operator.GTE, value=seg.low)]
            )
        if index < len(segments) - 1:
            bounds.append(MatchingRule(field=name, operator=Operator.LTE, value=seg.high))
        elif upper:
            bounds += (
                upper
                if all(_admits(r, seg.high) for r in upper)
                else [MatchingRule(field=name, operator=Operator.LTE, value=seg.high)]
            )
        actions = actions_of[seg.label]
        what = f"{describe_actions(actions)} when {_bounds_text(bounds) or 'any ' + name}"
        new_patterns.append(
            _evolved(pattern, pattern_id, kept + bounds, actions, seg.posterior, what)
        )
    if len(labelled) > 1:
        kind: Kind = "split"
    elif labelled[0].label == current:
        kind = "threshold"
    else:
        kind = "threshold_and_action"
    covered = sum(s.successes + s.failures for s in labelled)
    expected = (
        sum((s.successes + s.failures) * s.posterior for s in labelled) / covered
        if covered
        else 0.0
    )
    return EvolutionProposal(
        pattern_id=pattern_id,
        kind=kind,
        reason=(
            f"success rate {rate:.0%} over {len(outcomes)} outcomes; along {name} the "
            f"outcomes separate into: "
            + "; ".join(
                f"{describe_actions(actions_of[s.label]) if s.label else 'nothing works'} "
                f"at {_number_text(s.low)}..{_number_text(s.high)}"
                + (f" ({s.successes} ok, {s.failures} failed)" if s.label else "")
                for s in segments
            )
        ),
        field=path,
        segments=[
            SegmentSummary(
                actions=actions_of[s.label] if s.label else None,
                low=s.low,
                high=s.high,
                successes=s.successes,
                failures=s.failures,
            )
            for s in segments
        ],
        patterns=new_patterns,
        outcomes=len(points),
        success_rate_before=rate,
        expected_success_rate=round(expected, 4),
    )


def _action_proposal(
    pattern_id: str,
    pattern: Pattern,
    outcomes: list[Outcome],
    solutions: list[Candidate],
    rate: float,
) -> EvolutionProposal | None:
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    actions_of: dict[str, list[ActionSpec]] = {}
    for o in outcomes:
        key = action_key(o.actions)
        actions_of[key] = o.actions
        tally[key][0 if o.success else 1] += 1
    candidates = [
        Candidate(actions=actions_of[k], successes=s, failures=f, source="this pattern's outcomes")
        for k, (s, f) in tally.items()
    ]
    # the graph's record counts only for actions this pattern has no outcomes of
    candidates += [c for c in solutions if action_key(c.actions) not in tally]
    current = action_key(pattern.actions)
    s, f = tally.get(current, [0, 0])
    baseline = posterior(s, f)
    best = max(candidates, key=lambda c: (c.posterior, c.successes + c.failures), default=None)
    if best is None or action_key(best.actions) == current or best.posterior <= baseline:
        return None
    what = describe_actions(best.actions)
    return EvolutionProposal(
        pattern_id=pattern_id,
        kind="action",
        reason=(
            f"success rate {rate:.0%} over {len(outcomes)} outcomes; {what} has the best "
            f"posterior, {best.posterior:.2f} ({best.successes} ok, {best.failures} failed, "
            f"from {best.source}) against {baseline:.2f} for "
            f"{describe_actions(pattern.actions)}"
        ),
        patterns=[
            _evolved(
                pattern,
                pattern_id,
                list(pattern.matching_rules),
                best.actions,
                best.posterior,
                what,
            )
        ],
        outcomes=len(outcomes),
        success_rate_before=rate,
        expected_success_rate=round(best.posterior, 4),
    )


def propose_evolution(
    pattern_id: str,
    pattern: Pattern,
    outcomes: list[Outcome],
    *,
    solutions: list[Candidate] | None = None,
    min_outcomes: int = 10,
    threshold: float = SUCCESS_THRESHOLD,
    cost: float = DEFAULT_COST,
) -> EvolutionProposal | None:
    """The evolved version of a pattern, or None when it is not due or nothing better is
    known (pure: the evolver feeds it from the database)."""
    attempts = pattern.attempt_count
    if attempts < min_outcomes or pattern.status is not PatternStatus.ACTIVE:
        return None
    rate = pattern.success_count / attempts
    if rate >= threshold:
        return None
    return _split_proposal(pattern_id, pattern, outcomes, cost, rate) or _action_proposal(
        pattern_id, pattern, outcomes, solutions or [], rate
    )
