"""Agents' track records (schema/008): which of their chosen proposals healed or failed."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from aiops.agents.models import TrackRecord


class TrackRecords:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self, agent_id: str, key: str, success: bool, incident_id: str | None = None
    ) -> bool:
        """Count one outcome for an agent; False when this key was counted before."""
        fresh = await self._pool.fetchval(
            "INSERT INTO agent_outcomes (agent_id, key, incident_id, success)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            agent_id,
            key,
            incident_id,
            success,
        )
        return bool(fresh)

    async def get(self, agent_ids: Iterable[str]) -> dict[str, TrackRecord]:
        """Every asked-for agent's record; one with no outcomes has zero counts."""
        ids = sorted(set(agent_ids))
        rows = await self._pool.fetch(
            "SELECT agent_id, count(*) FILTER (WHERE success) AS successes,"
            " count(*) FILTER (WHERE NOT success) AS failures"
            " FROM agent_outcomes WHERE agent_id = ANY($1::text[]) GROUP BY agent_id",
            ids,
        )
        found = {
            row["agent_id"]: TrackRecord(
                agent_id=row["agent_id"], successes=row["successes"], failures=row["failures"]
            )
            for row in rows
        }
        return {i: found.get(i) or TrackRecord(agent_id=i) for i in ids}
