"""Pattern mining: recurring problems of one template on one service become a pattern node.

A group is every problem node with the same service and the same template (the
fingerprinter's, or the description with its variables masked when a problem was written
by hand). When its occurrences add up to `min_occurrences`, the group is a pattern:

- `pattern -triggers-> problem` for each problem of the group, weighted by its share of
  the occurrences: what the pattern stands for, and what a match on it recognises;
- `pattern -leads_to-> solution`: the solution tried most often on the group's problems
  (ties: the better success posterior, then the one solving more of the group). This is
  the edge a healer needs ("this pattern leads to that fix"), and it can be derived from
  the graph alone. The alternative, problem -> the problem that followed it within a
  window in the event store, would need incidents joined to events by time and service,
  which the graph does not record; it is left to the pattern tracker, which sees events.

Running it again updates the same nodes and edges (the pattern's fingerprint is its
service and template; edges are unique per triple): no duplicates. Only the fields mining
owns are written, so a person's status change or the tracker's counts survive a re-run.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from aiops.embeddings.base import Embedder
from aiops.fingerprint import mask_variables
from aiops.knowledge.texts import node_text
from aiops.patterns.models import MatchingRule, Operator, Pattern, PatternType
from aiops.policy.models import ActionSpec

_SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}
_PATTERN_TYPE = {
    "performance": PatternType.PERFORMANCE,
    "timeout": PatternType.PERFORMANCE,
    "security": PatternType.SECURITY,
    "anomaly": PatternType.BEHAVIORAL,
}
_PLACEHOLDER = re.compile(r"<[A-Z*]+>")
# keys of the pattern's data that mining owns; everything else is left as it is
_MINED_KEYS = (
    "pattern_type",
    "description",
    "matching_rules",
    "actions",
    "confidence",
    "success_rate",
    "occurrences",
    "last_updated",
    "service",
    "template",
    "severity",
)


class MinedPattern(BaseModel):
    id: str
    created: bool
    service: str | None
    template: str
    occurrences: int
    problems: int
    solution_id: str | None = None
    confidence: float


class MiningReport(BaseModel):
    min_occurrences: int
    groups: int = Field(description="service + template groups seen")
    patterns: list[MinedPattern]

    @property
    def created(self) -> int:
        return sum(p.created for p in self.patterns)


def template_regex(template: str) -> str:
    """The template as a regular expression: literal text escaped, each placeholder any text."""
    parts = _PLACEHOLDER.split(template)
    return ".+?".join(re.escape(part) for part in parts)


def pattern_fingerprint(service: str | None, template: str) -> str:
    digest = hashlib.sha256(f"{service or ''}|{template}".encode()).hexdigest()[:16]
    return f"mined:{digest}"


def _confidence(occurrences: int, min_occurrences: int) -> float:
    # 0.5 at the threshold, towards 1 as the pattern keeps recurring
    return round(occurrences / (occurrences + min_occurrences), 4)


async def _solutions_by_problem(
    conn: Any, problem_ids: list[Any]
) -> dict[Any, list[tuple[Any, dict[str, Any]]]]:
    rows = await conn.fetch(
        """
        SELECT e.to_node AS problem_id, s.id, s.data FROM knowledge_edges e
        JOIN knowledge_nodes s ON s.id = e.from_node AND s.node_type = 'solution'
        WHERE e.relationship = 'solves' AND e.to_node = ANY($1::uuid[])
        """,
        problem_ids,
    )
    found: dict[Any, list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for row in rows:
        found[row["problem_id"]].append((row["id"], row["data"]))
    return found


def _posterior(data: dict[str, Any]) -> float:
    attempts = int(data.get("attempt_count") or 0)
    successes = int(data.get("success_count") or 0)
    return round((1 + successes) / (2 + attempts), 4)  # mean of Beta(1 + s, 1 + f)


def _best_solution(
    problem_ids: list[Any], solutions: dict[Any, list[tuple[Any, dict[str, Any]]]]
) -> tuple[Any, dict[str, Any]] | None:
    seen: dict[Any, dict[str, Any]] = {}
    solved: dict[Any, int] = defaultdict(int)
    for pid in problem_ids:
        for sid, data in solutions.get(pid, []):
            seen[sid] = data
            solved[sid] += 1

    def rank(sid: Any) -> tuple[int, float, int, str]:
        data = seen[sid]
        return (int(data.get("attempt_count") or 0), _posterior(data), solved[sid], str(sid))

    if not seen:
        return None
    best = max(seen, key=rank)
    return best, seen[best]


async def extract_patterns(
    pool: asyncpg.Pool, embedder: Embedder, min_occurrences: int = 3
) -> MiningReport:
    """Pattern nodes for every service + template that recurred at least `min_occurrences`
    times (occurrences summed over its problem nodes), with triggers and leads_to edges."""
    if min_occurrences < 1:
        raise ValueError(f"min_occurrences must be at least 1, got {min_occurrences}")
    rows = await pool.fetch(
        """
        SELECT id, data->>'description' AS description, data->>'template' AS template,
               data->'context'->>'service' AS service, data->>'category' AS category,
               data->>'severity' AS severity,
               coalesce((data->>'occurrence_count')::int, 1) AS count
        FROM knowledge_nodes WHERE node_type = 'problem'
        """
    )
    groups: dict[tuple[str | None, str], list[Any]] = defaultdict(list)
    for row in rows:
        template = row["template"] or mask_variables(row["description"] or "")
        groups[(row["service"], template)].append(row)
    recurring = {
        key: members
        for key, members in groups.items()
        if sum(m["count"] for m in members) >= min_occurrences
    }
    mined: list[MinedPattern] = []
    async with pool.acquire() as conn:
        solutions = await _solutions_by_problem(
            conn, [m["id"] for members in recurring.values() for m in members]
        )
        for (service, template), members in sorted(
            recurring.items(), key=lambda item: (item[0][0] or "", item[0][1])
        ):
            mined.append(
                await _upsert_pattern(
                    conn, embedder, service, template, members, solutions, min_occurrences
                )
            )
    return MiningReport(min_occurrences=min_occurrences, groups=len(groups), patterns=mined)


async def _upsert_pattern(
    conn: Any,
    embedder: Embedder,
    service: str | None,
    template: str,
    members: list[Any],
    solutions: dict[Any, list[tuple[Any, dict[str, Any]]]],
    min_occurrences: int,
) -> MinedPattern:
    occurrences = sum(m["count"] for m in members)
    representative = max(members, key=lambda m: m["count"])
    categories = {m["category"] for m in members if m["category"]}
    category = categories.pop() if len(categories) == 1 else None
    severity = max(
        (m["severity"] for m in members if m["severity"] in _SEVERITY_ORDER),
        key=lambda s: _SEVERITY_ORDER[s],
        default=None,
    )
    best = _best_solution([m["id"] for m in members], solutions)
    rules = [
        MatchingRule(
            field="payload.message", operator=Operator.REGEX, value=template_regex(template)
        )
    ]
    if service:
        rules.insert(0, MatchingRule(field="service", operator=Operator.EQUALS, value=service))
    confidence = _confidence(occurrences, min_occurrences)
    pattern = Pattern(
        pattern_type=_PATTERN_TYPE.get(category or "", PatternType.ERROR),
        description=f"Recurring on {service or 'any service'}: {representative['description']}",
        matching_rules=rules,
        actions=[ActionSpec.model_validate(a) for a in best[1].get("actions", [])] if best else [],
        confidence=confidence,
        success_rate=float(best[1].get("success_rate") or 0.0) if best else 0.0,
        occurrences=occurrences,
        last_updated=datetime.now(UTC),
        service=service,
        template=template,
        severity=severity,
    )
    data = pattern.model_dump(mode="json")
    mined_part = {key: data[key] for key in _MINED_KEYS}
    text = node_text("pattern", data)
    vector = (await embedder.embed([text]))[0] if text else None
    async with conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO knowledge_nodes (node_type, fingerprint, data, embedding)
            VALUES ('pattern', $1, $2, $3)
            ON CONFLICT (node_type, fingerprint) DO UPDATE SET
                data = knowledge_nodes.data || $4::jsonb,
                embedding = coalesce(EXCLUDED.embedding, knowledge_nodes.embedding),
                updated_at = now()
            RETURNING id, (xmax = 0) AS created
            """,
            pattern_fingerprint(service, template),
            data,
            vector,
            mined_part,
        )
        assert row is not None
        pattern_id = row["id"]
        await conn.executemany(
            """
            INSERT INTO knowledge_edges (from_node, to_node, relationship, weight)
            VALUES ($1, $2, 'triggers', $3)
            ON CONFLICT (from_node, to_node, relationship)
            DO UPDATE SET weight = EXCLUDED.weight, updated_at = now()
            """,
            [(pattern_id, m["id"], round(m["count"] / occurrences, 4)) for m in members],
        )
        # one leads_to per pattern: a better solution replaces the previous choice
        await conn.execute(
            "DELETE FROM knowledge_edges WHERE from_node = $1 AND relationship = 'leads_to'"
            " AND ($2::uuid IS NULL OR to_node <> $2::uuid)",
            pattern_id,
            best[0] if best else None,
        )
        if best:
            await conn.execute(
                """
                INSERT INTO knowledge_edges (from_node, to_node, relationship, weight)
                VALUES ($1, $2, 'leads_to', $3)
                ON CONFLICT (from_node, to_node, relationship)
                DO UPDATE SET weight = EXCLUDED.weight, updated_at = now()
                """,
                pattern_id,
                best[0],
                _posterior(best[1]),
            )
    return MinedPattern(
        id=str(pattern_id),
        created=row["created"],
        service=service,
        template=template,
        occurrences=occurrences,
        problems=len(members),
        solution_id=str(best[0]) if best else None,
        confidence=confidence,
    )
