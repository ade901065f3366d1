"""Learning on patterns: outcomes tracked per pattern, and patterns that evolve from them.

`PatternTracker.record_outcome` counts an outcome in the pattern's row with one atomic
UPDATE computed from the row itself (concurrent outcomes all count) and keeps the outcome,
with the action taken and the values the pattern's rules read at the time, in
`pattern_outcomes` (schema/006).

`PatternEvolver`: when a pattern's success rate (success_count / attempt_count) is under
0.7 over at least `min_outcomes` outcomes, it asks aiops.patterns.proposals for an evolved
version from the recorded outcomes (a threshold moved or split by action, else the action
swapped for the one with the best posterior) and applies it: stores the new patterns,
links `old -evolves_into-> new`, retires the old one (one transaction; a pattern evolves
once however many evolvers race) and publishes a PatternEvolved event. Listeners reload
the library on its version bump.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Final

import asyncpg
from pydantic import BaseModel, Field

from aiops.events.envelope import Event, EventType, Severity
from aiops.events.mesh import EventMesh
from aiops.patterns.errors import PatternNotFound
from aiops.patterns.matcher import (
    EFFECTIVE_SERVICE,
    PatternMatcher,
    canonical_path,
)
from aiops.patterns.models import Pattern, PatternStatus
from aiops.patterns.proposals import (
    SUCCESS_THRESHOLD,
    Candidate,
    EvolutionProposal,
    EvolutionResult,
    Outcome,
    propose_evolution,
)
from aiops.patterns.segmentation import DEFAULT_COST
from aiops.patterns.store import PatternLibrary, parse_id
from aiops.policy.models import ActionSpec

log = logging.getLogger(__name__)

EVENT_SOURCE: Final = "aiops-patterns"
_SUMMARY: Final = {"description", "matching_rules", "actions"}


class PatternStats(BaseModel):
    pattern_id: str
    attempt_count: int
    success_count: int
    success_rate: float
    status: PatternStatus
    recorded: bool = Field(default=True, description="false: this key was recorded before")


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
                        **p.model_dump(mode="json", include=_SUMMARY),
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
