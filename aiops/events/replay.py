"""Replay: stored events published again, marked `replay`, to try detection changes on
real history. The listener does not store them a second time (same ids), and routes their
problems to separate `incident-replay-<fingerprint>` workflows, never to live incidents."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pydantic import BaseModel

from aiops.events.mesh import STREAM_PREFIX, EventMesh
from aiops.events.store import EventQuery, EventStore

REPLAY_STREAM: Final = STREAM_PREFIX + "replay"


class ReplayReport(BaseModel):
    stream: str
    published: int
    first: datetime | None = None
    last: datetime | None = None


async def replay(
    store: EventStore,
    mesh: EventMesh,
    *,
    since: datetime,
    until: datetime | None = None,
    event_types: list[str] | None = None,
    sources: list[str] | None = None,
    to_stream: str = REPLAY_STREAM,
    chunk: int = 1000,
) -> ReplayReport:
    """Publish the matching stored events, oldest first, to one stream."""
    query = EventQuery(
        since=since,
        until=until,
        event_types=event_types or [],
        sources=sources or [],
        limit=None,
    )
    report = ReplayReport(stream=to_stream, published=0)
    batch = []
    async for stored in store.iterate(query, chunk=chunk):
        batch.append(stored.event.model_copy(update={"replay": True}))
        if report.first is None:
            report.first = stored.event.timestamp
        report.last = stored.event.timestamp
        if len(batch) >= chunk:
            await mesh.publish_many(batch, stream=to_stream)
            report.published += len(batch)
            batch = []
    if batch:
        await mesh.publish_many(batch, stream=to_stream)
        report.published += len(batch)
    return report
