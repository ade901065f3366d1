"""Walking the graph: every node within N hops of a start node, with its distance and one
shortest path, in a single recursive CTE.

Each step may follow an edge forwards (`-solves->`) or backwards (`<-solves-`): most
questions cross edges against their direction ("which solutions solve this problem?" is
`solution -solves-> problem` read from the problem). Each node is reached once, at its
shortest distance, so cycles (similar_to both ways, A causes B causes A) end the walk
instead of looping.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from pydantic import TypeAdapter

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

# A breadth-first search in one recursive CTE: each iteration is one hop, its row holds the
# frontier (the nodes first reached at that hop, each with the edge it was reached by) and
# every node seen so far. A node is reached once, at its shortest distance, so a hub or a
# cycle costs its edges once instead of once per path through it (enumerating paths was
# several times slower on the benchmark graph). Paths are rebuilt from the parent links.
_BFS = """
WITH RECURSIVE bfs(hop, frontier, seen, parents, steps) AS (
    SELECT 0, ARRAY[$1::uuid], ARRAY[$1::uuid], ARRAY[NULL::uuid], ARRAY[NULL::text]
    UNION ALL
    SELECT b.hop + 1, nxt.ids, b.seen || nxt.ids, nxt.parents, nxt.steps
    FROM bfs b
    CROSS JOIN LATERAL (
        SELECT array_agg(d.id) AS ids, array_agg(d.parent) AS parents,
               array_agg(d.step) AS steps
        FROM (
            SELECT DISTINCT ON (x.id) x.id, x.parent, x.step FROM (
                SELECT e.to_node AS id, e.from_node AS parent,
                       '-' || e.relationship::text || '->' AS step
                FROM knowledge_edges e
                WHERE $4 AND e.from_node = ANY(b.frontier)
                  AND ($3::text[] IS NULL OR e.relationship::text = ANY($3::text[]))
                UNION ALL
                SELECT e.from_node, e.to_node, '<-' || e.relationship::text || '-'
                FROM knowledge_edges e
                WHERE $5 AND e.to_node = ANY(b.frontier)
                  AND ($3::text[] IS NULL OR e.relationship::text = ANY($3::text[]))
            ) x
            WHERE x.id NOT IN (SELECT unnest(b.seen))
            ORDER BY x.id, x.parent, x.step
        ) d
    ) nxt
    WHERE b.hop < $2 AND nxt.ids IS NOT NULL
), reached AS (
    SELECT b.hop, r.id, r.parent, r.step
    FROM bfs b, unnest(b.frontier, b.parents, b.steps) AS r(id, parent, step)
    WHERE b.hop > 0
)
SELECT r.hop, r.id, r.parent, r.step, n.node_type::text AS node_type,
       CASE WHEN $7 THEN n.data->>'description' END AS description,
       CASE WHEN $7 THEN n.data END AS data
FROM reached r JOIN knowledge_nodes n ON n.id = r.id
ORDER BY r.hop, r.id
LIMIT $6
"""


@dataclass(frozen=True, slots=True)
class TraversalNode:
    """One node a walk reached. A dataclass, not a pydantic model: a walk returns hundreds of
    nodes and building a model for each cost as much as the query (3.4 of 12.8 ms for 700
    nodes). Serialise through pydantic (`NODES.dump_json`), which handles dataclasses."""

    id: str
    node_type: str
    hops: int  # length of the shortest path from the start node
    path: tuple[str, ...]  # node ids from the start node to this one, inclusive
    steps: tuple[str, ...]  # the edge taken at each hop: -solves-> forwards, <-solves- backwards
    description: str = ""  # only with include_data
    data: dict[str, Any] | None = None  # only with include_data


NODES = TypeAdapter(list[TraversalNode])


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
    include_data: bool = False,
) -> list[TraversalNode]:
    """Nodes within `max_hops` of `node_id`, nearest first, each once with a shortest path.

    `relationships` keeps only those edge types; `direction` follows edges forwards, backwards
    or both; `include_data` adds each node's description and stored JSON (reading them costs
    a visit to each node's row: half the time of a walk that reaches hundreds of nodes).
    Raises KnowledgeError for an unknown node or relationship.
    """
    start = _check(node_id, max_hops, relationships)
    rows = await pool.fetch(
        _BFS,
        start,
        max_hops,
        relationships or None,
        direction in ("out", "both"),
        direction in ("in", "both"),
        limit,
        include_data,
    )
    # checked only when nothing was reached: one round trip in the common case
    if not rows:
        exists = await pool.fetchval("SELECT true FROM knowledge_nodes WHERE id = $1", start)
        if not exists:
            raise KnowledgeError(f"no knowledge node {start}")
    # rows come nearest first, so a node's parent is always known before the node
    paths: dict[Any, tuple[tuple[str, ...], tuple[str, ...]]] = {start: ((str(start),), ())}
    found = []
    for hop, node, parent, step, node_type, description, data in rows:
        parent_path, parent_steps = paths[parent]
        name = str(node)
        path, steps = (*parent_path, name), (*parent_steps, step)
        paths[node] = (path, steps)
        found.append(TraversalNode(name, node_type, hop, path, steps, description or "", data))
    return found
