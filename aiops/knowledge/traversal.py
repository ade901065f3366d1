"""Walking the graph: every node within N hops of a start node, with its distance and one
shortest path, in a single recursive CTE.

Each step may follow an edge forwards (`-solves->`) or backwards (`<-solves-`): most
questions cross edges against their direction ("which solutions solve this problem?" is
`solution -solves-> problem` read from the problem). A path never visits a node twice, so
cycles (similar_to both ways, A causes B causes A) end the walk instead of looping.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, Field

from aiops.knowledge.errors import KnowledgeError

Direction = Literal["out", "in", "both"]

# the seed's 13 relationships (schema/001_init.sql, enum knowledge_relationship)
RELATIONSHIPS: tuple[str, ...] = (
    "solves",
    "causes",
    "requires",
    "similar_to",
    "evolves_into",
    "implements",
    "validates",
    "conflicts_with",
    "depends_on",
    "triggers",
    "leads_to",
    "mitigates",
    "collaborates",
)
MAX_HOPS = 10

# A recursive CTE enumerates paths, not nodes; DISTINCT ON then keeps each node's shortest.
_WALK = """
WITH RECURSIVE walk(id, hops, path, steps) AS (
    SELECT $1::uuid, 0, ARRAY[$1::uuid], ARRAY[]::text[]
    UNION ALL
    SELECT nxt.id, w.hops + 1, w.path || nxt.id, w.steps || nxt.step
    FROM walk w
    CROSS JOIN LATERAL (
        SELECT e.to_node AS id, '-' || e.relationship::text || '->' AS step
        FROM knowledge_edges e
        WHERE $4 AND e.from_node = w.id
          AND ($3::text[] IS NULL OR e.relationship::text = ANY($3::text[]))
        UNION ALL
        SELECT e.from_node, '<-' || e.relationship::text || '-'
        FROM knowledge_edges e
        WHERE $5 AND e.to_node = w.id
          AND ($3::text[] IS NULL OR e.relationship::text = ANY($3::text[]))
    ) nxt
    WHERE w.hops < $2 AND NOT nxt.id = ANY(w.path)
), nearest AS (
    SELECT DISTINCT ON (id) id, hops, path, steps FROM walk WHERE hops > 0
    ORDER BY id, hops
)
SELECT n.id, n.node_type::text AS node_type, n.data, w.hops, w.path, w.steps
FROM nearest w JOIN knowledge_nodes n ON n.id = w.id
ORDER BY w.hops, n.node_type, n.id
LIMIT $6
"""


class TraversalNode(BaseModel):
    id: str
    node_type: str
    hops: int = Field(ge=1, description="length of the shortest path from the start node")
    path: list[str] = Field(description="node ids from the start node to this one, inclusive")
    steps: list[str] = Field(
        description="the edge taken at each hop: -solves-> forwards, <-solves- backwards"
    )
    description: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


def _check(node_id: str, max_hops: int, relationships: list[str] | None) -> uuid.UUID:
    try:
        start = uuid.UUID(str(node_id))
    except ValueError:
        raise KnowledgeError(f"{node_id!r} is not a node id (a UUID)") from None
    if not 1 <= max_hops <= MAX_HOPS:
        raise KnowledgeError(f"max_hops must be between 1 and {MAX_HOPS}, got {max_hops}")
    unknown = sorted(set(relationships or []) - set(RELATIONSHIPS))
    if unknown:
        raise KnowledgeError(
            f"unknown relationship(s) {', '.join(unknown)}; known: {', '.join(RELATIONSHIPS)}"
        )
    return start


async def traverse(
    pool: asyncpg.Pool,
    node_id: str,
    max_hops: int = 3,
    relationships: list[str] | None = None,
    direction: Direction = "both",
    limit: int = 1000,
) -> list[TraversalNode]:
    """Nodes within `max_hops` of `node_id`, nearest first, each once with a shortest path.

    `relationships` keeps only those edge types; `direction` follows edges forwards, backwards
    or both. Raises KnowledgeError for an unknown node or relationship.
    """
    start = _check(node_id, max_hops, relationships)
    async with pool.acquire() as conn:
        exists = await conn.fetchval("SELECT true FROM knowledge_nodes WHERE id = $1", start)
        if not exists:
            raise KnowledgeError(f"no knowledge node {start}")
        rows = await conn.fetch(
            _WALK,
            start,
            max_hops,
            relationships or None,
            direction in ("out", "both"),
            direction in ("in", "both"),
            limit,
        )
    return [
        TraversalNode(
            id=str(row["id"]),
            node_type=row["node_type"],
            hops=row["hops"],
            path=[str(p) for p in row["path"]],
            steps=list(row["steps"]),
            description=str((row["data"] or {}).get("description") or ""),
            data=row["data"] or {},
        )
        for row in rows
    ]
