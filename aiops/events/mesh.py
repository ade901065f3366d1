"""Publishing: events onto `events:<domain>` Redis streams.

A publish never trims: a length-based MAXLEN at XADD would drop entries the listener has
not read yet whenever it is away or behind. The listener trims each stream to about
AIOPS_EVENTS_MAXLEN instead, never past what a consumer group still needs
(aiops/events/trim.py), and the store keeps the history."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis

from aiops.config import Settings
from aiops.endpoints import resolve_redis_url
from aiops.events.envelope import WIRE_FIELD, Event
from aiops.events.retry import Backoff, retrying
from aiops.trace_context import current_traceparent

STREAM_PREFIX: Final = "events:"
# events pipelined per round trip in publish_many
PIPELINE_CHUNK: Final = 1000
_DOMAIN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


class PublishError(ValueError):
    """An event that cannot be published (too large, or aimed at the dead-letter stream)."""


def stream_for(domain: str) -> str:
    if _DOMAIN.fullmatch(domain) is None:
        raise PublishError(
            f"domain {domain!r} must be letters, digits, _ . - (at most 128), "
            "starting with a letter or digit"
        )
    return STREAM_PREFIX + domain


class EventMesh:
    """Publishes events; by default each to `events:<source>`."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        maxlen: int = 1_000_000,
        max_event_bytes: int = 1_048_576,
        dead_letter_stream: str = "events:dead",
    ) -> None:
        self.redis = client
        # the length the listener trims streams to; kept here for the callers that report it
        self.maxlen = maxlen
        self.max_event_bytes = max_event_bytes
        self.dead_letter_stream = dead_letter_stream

    @classmethod
    def from_settings(cls, settings: Settings, redis_url: str | None = None) -> EventMesh:
        client = aioredis.Redis.from_url(redis_url or resolve_redis_url(settings))
        return cls(
            client,
            maxlen=settings.events_maxlen,
            max_event_bytes=settings.events_max_payload_bytes,
            dead_letter_stream=settings.dead_letter_stream,
        )

    async def aclose(self) -> None:
        await self.redis.aclose()

    def target(self, event: Event, stream: str | None, domain: str | None) -> str:
        name = stream or stream_for(domain or event.source)
        if name == self.dead_letter_stream:
            raise PublishError(f"{name} is the dead-letter stream; publish elsewhere")
        return name

    def _wire(self, event: Event) -> bytes:
        data = event.to_wire()
        if len(data) > self.max_event_bytes:
            raise PublishError(
                f"event {event.id} is {len(data)} bytes, over the limit of "
                f"{self.max_event_bytes} (AIOPS_EVENTS_MAX_PAYLOAD_BYTES)"
            )
        return data

    async def publish(
        self, event: Event, *, stream: str | None = None, domain: str | None = None
    ) -> str:
        """XADD one event; returns the stream entry id. Retries while Redis is away (a
        retry can add the entry twice; the listener stores it once)."""
        if event.traceparent is None:
            traceparent = current_traceparent()
            if traceparent is not None:
                event = event.model_copy(update={"traceparent": traceparent})
        name = self.target(event, stream, domain)
        data = self._wire(event)

        async def add() -> bytes | str:
            return await self.redis.xadd(name, {WIRE_FIELD: data})

        entry_id = await retrying(add, f"publishing to {name}", backoff=Backoff(cap=2.0))
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def publish_many(
        self,
        events: Sequence[Event],
        *,
        stream: str | None = None,
        domain: str | None = None,
    ) -> list[str]:
        """XADD many events, pipelined; returns their entry ids in order."""
        targets = [(self.target(e, stream, domain), self._wire(e)) for e in events]
        ids: list[str] = []
        for start in range(0, len(targets), PIPELINE_CHUNK):
            chunk = targets[start : start + PIPELINE_CHUNK]

            async def add(chunk: list[tuple[str, bytes]] = chunk) -> list[bytes]:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for name, data in chunk:
                        pipe.xadd(name, {WIRE_FIELD: data})
                    result: list[bytes] = await pipe.execute()
                    return result

            added = await retrying(add, "publishing events", backoff=Backoff(cap=2.0))
            ids += [entry_id.decode() for entry_id in added]
        return ids
