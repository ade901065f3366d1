"""Events to Redis Streams through aiops's own EventMesh, off the request path.

Requests put events on a bounded queue and go on; one task publishes them. While Redis is
away the mesh retries and the queue fills; when full, the oldest event is dropped (and
counted) so a Redis outage never stalls or grows the service without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiops.events.envelope import Event, EventType, Severity
from aiops.events.mesh import EventMesh

log = logging.getLogger("bookmark_service.events")


class EventSink:
    def __init__(self, mesh: EventMesh, stream: str, service: str, capacity: int = 10_000) -> None:
        self.mesh = mesh
        self.stream = stream
        self.service = service
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=capacity)
        self.published = 0
        self.dropped = 0

    def emit(
        self,
        event_type: EventType | str,
        payload: dict[str, Any],
        severity: Severity | None = None,
    ) -> Event:
        event = Event(
            event_type=str(event_type),
            source=self.service,
            service=self.service,
            payload=payload,
            severity=severity,
        )
        while True:
            try:
                self._queue.put_nowait(event)
                return event
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self._queue.task_done()
                self.dropped += 1

    async def run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.mesh.publish(event, stream=self.stream)
                self.published += 1
            except Exception:
                # a bad event (too large...) must not stop the ones after it
                log.exception("could not publish %s to %s", event.event_type, self.stream)
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        """Wait for queued events to be published, at most timeout seconds (at shutdown)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()
