"""Learning on patterns: outcomes tracked per pattern, and patterns that evolve from them.

`PatternTracker.record_outcome` counts an outcome in the pattern's row with one atomic
UPDATE computed from the row itself (concurrent outcomes all count) and keeps the outcome,
with the action taken and the values the pattern's rules read at the time, in
`pattern_outcomes` (schema/006).

`PatternEvolver`: when a pattern's success rate (success_count / attempt_count) is under
0.7 over at least `min_outcomes` outcomes, it proposes an evolved version from the
recorded outcomes:

1. threshold search: for each field the pattern compares with a number, the outcomes are
   laid out along that field and segmented by action (aiops.patterns.segmentation); the
   field whose segmentation beats the pattern as it is by the most wins, and each
   labelled segment becomes a pattern with that action and that range. This moves a
   threshold (one segment), or splits the pattern ("restart above 80" becomes "scale
   from 70 to 85" and "restart above 85" when restarts failed below 85 and scaling
   worked there). A segment at an outer end keeps the original bound on that side
   (none, when the original is open there), widened to the outcomes seen beyond it.
2. otherwise, action swap: the action with the best success posterior (mean of
   Beta(1 + s, 1 + f)) among the pattern's own outcomes and the solutions of the
   problems it triggers (and the solution it leads to) replaces the pattern's, when it
   beats the current one.

Evolving stores the new patterns, links `old -evolves_into-> new`, retires the old one
(one transaction; a pattern evolves once however many evolvers race) and publishes a
PatternEvolved event. Listeners reload the library on its version bump.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from typing import Any, Final, Literal

import asyncpg
from pydantic import BaseModel, Field

from aiops.events.envelope import Event, EventType, Severity
from aiops.events.mesh import EventMesh
from aiops.patterns.errors import PatternNotFound
from aiops.patterns.matcher import (
    EFFECTIVE_SERVICE,
    PatternMatcher,
    canonical_path,
    compile_rule,
    is_number,
)
from aiops.patterns.models import MatchingRule, Operator, Pattern, PatternStatus
from aiops.patterns.segmentation import DEFAULT_COST, Point, Segment, score, segment
from aiops.patterns.store import PatternLibrary, parse_id
from aiops.policy.models import ActionSpec

log = logging.getLogger(__name__)

SUCCESS_THRESHOLD: Final = 0.7
EVENT_SOURCE: Final = "aiops-patterns"
_LOWER: Final = (Operator.GREATER_THAN, Operator.GTE)
_UPPER: Final = (Operator.LESS_THAN, Operator.LTE)


class PatternStats(BaseModel):
    pattern_id: str
    attempt_count: int
    success_count: int
    success_rate: float
    status: PatternStatus
    recorded: bool = Field(default=True, description="false: this key was recorded before")


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


def _stats(pattern_id: str, data: dict[str, Any], recorded: bool = True) -> PatternStats:
    attempts = int(data.get("attempt_count") or 0)
    successes = int(data.get("success_count") or 0)
    return PatternStats(
        pattern_id=pattern_id,
        attempt_count=attempts,
        success_count=successes,
        success_rate=successes / attempts if attempts else 0.0,
        status=PatternStatus(data.get("status") or PatternStatus.ACTIVE),
        recorded=recorded,
    )


class PatternTracker:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.library = PatternLibrary(pool)

    async def record_outcome(
        self,
        pattern_id: str,
        success: bool,
        *,
        event: Event | None = None,
        observed: dict[str, Any] | None = None,
        actions: list[ActionSpec] | None = None,
        solution_id: str | None = None,
        key: str | None = None,
    ) -> PatternStats:
        """Count one outcome of acting on a pattern's match.

        event: the matched event; the values the pattern's rules read in it are kept (what
        the evolver splits on). observed: such values given directly (field -> value).
        actions: what was done; default the pattern's actions. key: an idempotency key
        (e.g. the incident's workflow id): a key recorded before changes nothing.
        """
        pid = parse_id(pattern_id)
        stored = await self.library.get(pattern_id)
        values: dict[str, Any] = {}
        if event is not None:
            values.update(_observe(stored.pattern, event))
        for name, value in (observed or {}).items():
            values[canonical_path(name)] = value
        done = stored.pattern.actions if actions is None else actions
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                """
                INSERT INTO pattern_outcomes (pattern_id, success, actions, solution_id,
                                              observed, key)
                VALUES ($1, $2, $3::text::jsonb, $4::uuid, $5::text::jsonb, $6)
                ON CONFLICT (key) DO NOTHING
                RETURNING true
                """,
                pid,
                success,
                json.dumps([a.model_dump(mode="json") for a in done]),
                solution_id,
                json.dumps(values),
                key,
            )
            if not fresh:
                data = await conn.fetchval(
                    "SELECT data::text FROM knowledge_nodes WHERE id = $1", pid
                )
                return _stats(str(pid), json.loads(data), recorded=False)
            data = await conn.fetchval(
                """
                UPDATE knowledge_nodes SET data = data || jsonb_build_object(
                    'attempt_count', coalesce((data->>'attempt_count')::int, 0) + 1,
                    'success_count', coalesce((data->>'success_count')::int, 0) + $2::int,
                    'success_rate', (coalesce((data->>'success_count')::int, 0) + $2::int)::float8
                                    / (coalesce((data->>'attempt_count')::int, 0) + 1),
                    'last_updated', now()),
                    updated_at = now()
                WHERE id = $1 AND node_type = 'pattern'
                RETURNING data::text
                """,
                pid,
                1 if success else 0,
            )
        if data is None:  # deleted between the read and the update
            raise PatternNotFound(f"no pattern {pattern_id}")
        return _stats(str(pid), json.loads(data))

    async def stats(self, pattern_id: str) -> PatternStats:
        stored = await self.library.get(pattern_id)
        return _stats(stored.id, stored.pattern.model_dump(mode="json"))

    async def outcomes(self, pattern_id: str, limit: int = 1000) -> list[Outcome]:
        """The newest `limit` outcomes, oldest first."""
        rows = await self.pool.fetch(
            """
            SELECT success, actions::text AS actions, solution_id, observed::text AS observed
            FROM (SELECT * FROM pattern_outcomes WHERE pattern_id = $1
                  ORDER BY id DESC LIMIT $2) newest
            ORDER BY id
            """,
            parse_id(pattern_id),
            limit,
        )
        return [
            Outcome(
                success=row["success"],
                actions=[ActionSpec.model_validate(a) for a in json.loads(row["actions"])],
                solution_id=str(row["solution_id"]) if row["solution_id"] else None,
                observed=json.loads(row["observed"]),
            )
            for row in rows
        ]


def _observe(pattern: Pattern, event: Event) -> dict[str, Any]:
    view = PatternMatcher([("observed", pattern)], skip_invalid=True).view(event)
    view.pop(EFFECTIVE_SERVICE, None)
    return view


# --- proposals -------------------------------------------------------------------------

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


class PatternEvolver:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        mesh: EventMesh | None = None,
        min_outcomes: int = 10,
        threshold: float = SUCCESS_THRESHOLD,
        cost: float = DEFAULT_COST,
        window: int = 1000,
    ) -> None:
        self.pool = pool
        self.mesh = mesh
        self.library = PatternLibrary(pool)
        self.tracker = PatternTracker(pool)
        self.min_outcomes = min_outcomes
        self.threshold = threshold
        self.cost = cost
        self.window = window

    async def _solutions(self, pattern_id: str) -> list[Candidate]:
        rows = await self.pool.fetch(
            """
            SELECT s.id, s.data::text AS data FROM knowledge_nodes s
            WHERE s.node_type = 'solution' AND s.id IN (
                SELECT to_node FROM knowledge_edges
                WHERE from_node = $1 AND relationship = 'leads_to'
                UNION
                SELECT solves.from_node FROM knowledge_edges triggers
                JOIN knowledge_edges solves
                  ON solves.to_node = triggers.to_node AND solves.relationship = 'solves'
                WHERE triggers.from_node = $1 AND triggers.relationship = 'triggers')
            """,
            parse_id(pattern_id),
        )
        found = []
        for row in rows:
            data = json.loads(row["data"])
            attempts = int(data.get("attempt_count") or 0)
            successes = int(data.get("success_count") or 0)
            found.append(
                Candidate(
                    actions=[ActionSpec.model_validate(a) for a in data.get("actions", [])],
                    successes=successes,
                    failures=attempts - successes,
                    source=f"solution {row['id']}",
                )
            )
        return found

    async def propose(self, pattern_id: str) -> EvolutionProposal | None:
        stored = await self.library.get(pattern_id)
        return propose_evolution(
            stored.id,
            stored.pattern,
            await self.tracker.outcomes(pattern_id, self.window),
            solutions=await self._solutions(pattern_id),
            min_outcomes=self.min_outcomes,
            threshold=self.threshold,
            cost=self.cost,
        )

    async def evolve(self, pattern_id: str) -> EvolutionResult | None:
        """Propose and apply; None when the pattern is not due, nothing better is known,
        or another evolver got there first."""
        proposal = await self.propose(pattern_id)
        if proposal is None:
            return None
        pid = parse_id(pattern_id)
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.fetchval(
                "SELECT coalesce(data->>'status', 'active') FROM knowledge_nodes"
                " WHERE id = $1 AND node_type = 'pattern' FOR UPDATE",
                pid,
            )
            if status != PatternStatus.ACTIVE.value:
                return None
            new_ids: list[str] = []
            for pattern, edge in zip(proposal.patterns, _edge_data(proposal), strict=True):
                added = await self.library.add(pattern, conn=conn)
                if added.id == str(pid):
                    continue
                if added.status is not PatternStatus.ACTIVE:
                    await self.library.reactivate(added.id, conn=conn)
                await conn.execute(
                    """
                    INSERT INTO knowledge_edges (from_node, to_node, relationship, weight, data)
                    VALUES ($1, $2, 'evolves_into', $3, $4::text::jsonb)
                    ON CONFLICT (from_node, to_node, relationship)
                    DO UPDATE SET weight = EXCLUDED.weight, data = EXCLUDED.data,
                                  updated_at = now()
                    """,
                    pid,
                    uuid.UUID(added.id),
                    pattern.confidence,
                    json.dumps(edge),
                )
                new_ids.append(added.id)
            await self.library.retire(
                str(pid), f"evolved ({proposal.kind}): {proposal.reason}", conn=conn
            )
        result = EvolutionResult(proposal=proposal, old_id=str(pid), new_ids=new_ids)
        log.info("pattern %s evolved into %s: %s", pid, ", ".join(new_ids), proposal.reason)
        if self.mesh is not None:
            result.event_id = await self._publish(result)
        return result

    async def _publish(self, result: EvolutionResult) -> str:
        proposal = result.proposal
        event = Event(
            event_type=EventType.PATTERN_EVOLVED,
            source=EVENT_SOURCE,
            severity=Severity.INFO,
            payload={
                "pattern_id": result.old_id,
                "evolved_into": result.new_ids,
                "kind": proposal.kind,
                "reason": proposal.reason,
                "field": proposal.field,
                "outcomes": proposal.outcomes,
                "success_rate_before": proposal.success_rate_before,
                "expected_success_rate": proposal.expected_success_rate,
                "patterns": [
                    {
                        "id": i,
                        **p.model_dump(
                            mode="json", include={"description", "matching_rules", "actions"}
                        ),
                    }
                    for i, p in zip(result.new_ids, proposal.patterns, strict=False)
                ],
            },
        )
        assert self.mesh is not None
        await self.mesh.publish(event)
        return str(event.id)

    async def due(self) -> list[str]:
        """Active patterns whose success rate is under the threshold over enough outcomes."""
        rows = await self.pool.fetch(
            """
            SELECT id FROM knowledge_nodes
            WHERE node_type = 'pattern' AND coalesce(data->>'status', 'active') = 'active'
              AND coalesce((data->>'attempt_count')::int, 0) >= $1
              AND coalesce((data->>'success_count')::int, 0)
                  < $2::float8 * coalesce((data->>'attempt_count')::int, 0)
            ORDER BY created_at, id
            """,
            self.min_outcomes,
            self.threshold,
        )
        return [str(row["id"]) for row in rows]

    async def evolve_due(self) -> list[EvolutionResult]:
        results = []
        for pattern_id in await self.due():
            result = await self.evolve(pattern_id)
            if result is not None:
                results.append(result)
        return results


def _edge_data(proposal: EvolutionProposal) -> list[dict[str, Any]]:
    return [
        {"kind": proposal.kind, "field": proposal.field, "reason": proposal.reason}
        for _ in proposal.patterns
    ]
