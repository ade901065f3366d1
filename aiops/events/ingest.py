"""The listener's pipeline, one batch at a time:

    read -> validate -> dead-letter the invalid (and acknowledge them)
         -> store the valid (one transaction) -> route -> acknowledge the valid

An entry is acknowledged only once its outcome is durable (stored and routed, or in the
dead-letter stream), so a crash anywhere means redelivery, and the store's idempotence on
event id turns redelivery into exactly-once storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import asyncpg
import redis.exceptions

from aiops.events.consumer import MAX_DELIVERIES, Entry, StreamConsumer
from aiops.events.envelope import Event, InvalidEvent, decode_entry
from aiops.events.retry import TRANSIENT, Backoff, retrying
from aiops.events.routing import IncidentRouter, Subscription, deliver
from aiops.events.store import EventStore, Located, StoreResult

log = logging.getLogger(__name__)

STATS_EVERY_S: Final = 30.0


@dataclass
class IngestStats:
    batches: int = 0
    entries: int = 0
    stored: int = 0
    repeats: int = 0
    dead_lettered: int = 0
    vanished: int = 0
    problems: int = 0
    observations: int = 0

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in vars(self).items())


@dataclass
class BatchReport:
    entries: int = 0
    stored: int = 0
    repeats: int = 0
    dead_lettered: int = 0
    observations: int = 0
    reasons: list[str] = field(default_factory=list)


def _same_event(a: Event, b: Event) -> bool:
    return a.model_dump(exclude={"replay"}) == b.model_dump(exclude={"replay"})


class Ingestor:
    def __init__(
        self,
        consumer: StreamConsumer,
        store: EventStore,
        *,
        max_event_bytes: int,
        incidents: IncidentRouter | None = None,
        subscriptions: Sequence[Subscription] = (),
    ) -> None:
        self.consumer = consumer
        self.store = store
        self.max_event_bytes = max_event_bytes
        self.incidents = incidents
        self.subscriptions = list(subscriptions)
        self.stats = IngestStats()

    # --- one batch ---

    async def process(self, entries: Sequence[Entry]) -> BatchReport:
        report = BatchReport(entries=len(entries))
        valid: list[tuple[Entry, Event]] = []
        invalid: list[tuple[Entry, str]] = []
        vanished: list[Entry] = []
        first_by_id: dict[uuid.UUID, Event] = {}
        repeats_in_batch: list[Entry] = []
        for entry in entries:
            if entry.fields is None:
                vanished.append(entry)
                continue
            if entry.deliveries > MAX_DELIVERIES:
                invalid.append(
                    (
                        entry,
                        f"delivered {entry.deliveries} times and never acknowledged: "
                        "each listener that took it died",
                    )
                )
                continue
            try:
                event = decode_entry(
                    entry.stream, entry.entry_id, entry.fields, self.max_event_bytes
                )
            except InvalidEvent as error:
                invalid.append((entry, error.reason))
                continue
            earlier = first_by_id.get(event.id)
            if earlier is None:
                first_by_id[event.id] = event
                valid.append((entry, event))
            elif _same_event(earlier, event):
                repeats_in_batch.append(entry)
            else:
                invalid.append(
                    (
                        entry,
                        "duplicate event id with different content: "
                        f"{event.id} came earlier in this batch",
                    )
                )

        if vanished:
            log.warning("%d entries were trimmed before they were processed", len(vanished))
        await self._dead_letter(invalid)

        to_store = [
            (i, Located(event, entry.stream, entry.entry_id))
            for i, (entry, event) in enumerate(valid)
            if not event.replay  # replays are stored already; they come back for routing
        ]
        result = await self._store([item for _, item in to_store])
        conflicts = [(to_store[i][0], reason) for i, reason in result.conflicts]
        repeats = {to_store[i][0] for i in result.repeats}
        conflict_ids = {i for i, _ in conflicts}
        await self._dead_letter([(valid[i][0], reason) for i, reason in conflicts])

        routed = [
            event
            for i, (_, event) in enumerate(valid)
            if i not in conflict_ids and i not in repeats
        ]
        report.observations = await self._route(routed)

        done = [entry for i, (entry, _) in enumerate(valid) if i not in conflict_ids]
        await self._ack(done + repeats_in_batch + vanished)

        report.stored = result.stored
        report.repeats = len(repeats) + len(repeats_in_batch)
        report.dead_lettered = len(invalid) + len(conflicts)
        report.reasons = [r for _, r in invalid] + [r for _, r in conflicts]
        s = self.stats
        s.batches += 1
        s.entries += len(entries)
        s.stored += report.stored
        s.repeats += report.repeats
        s.dead_lettered += report.dead_lettered
        s.vanished += len(vanished)
        s.observations += report.observations
        return report

    async def _dead_letter(self, items: Sequence[tuple[Entry, str]]) -> None:
        if items:
            await retrying(lambda: self.consumer.dead_letter(items), "dead-lettering")

    async def _ack(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        try:
            await retrying(lambda: self.consumer.ack(entries), "acknowledging")
        except redis.exceptions.ResponseError as error:
            # NOGROUP: Redis came back without the group (no persistence); nothing to ack.
            if "NOGROUP" not in str(error):
                raise
            log.warning("could not acknowledge, the group is gone: %s", error)
            self.consumer.forget_groups()

    async def _store(self, items: Sequence[Located]) -> StoreResult:
        """Store with retries while PostgreSQL is away. A data error that PostgreSQL finds
        and validation did not is narrowed down by halving the batch, so only the
        offending event is dead-lettered."""
        if not items:
            return StoreResult()
        try:
            return await retrying(lambda: self.store.store(items), "storing events")
        except asyncpg.DataError as error:
            if len(items) == 1:
                return StoreResult(conflicts=[(0, f"refused by PostgreSQL: {error}")])
        half = len(items) // 2
        left = await self._store(items[:half])
        right = await self._store(items[half:])
        return StoreResult(
            stored=left.stored + right.stored,
            repeats=left.repeats + [i + half for i in right.repeats],
            conflicts=left.conflicts + [(i + half, r) for i, r in right.conflicts],
        )

    async def _route(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        if self.subscriptions:
            await deliver(self.subscriptions, events)
        if self.incidents is None:
            return 0
        observations = self.incidents.observe(events)
        self.stats.problems += sum(o.count for o in observations)
        if observations:
            await self.incidents.signal_all(observations)
        return len(observations)

    # --- the loop ---

    async def run(self, stop: asyncio.Event) -> IngestStats:
        """Process batches until stop is set; the batch in hand is finished first."""
        backoff = Backoff()
        last_stats = time.monotonic()
        while not stop.is_set():
            try:
                entries = await self.consumer.read()
            except TRANSIENT as error:
                delay = backoff.next_delay()
                log.warning("reading from Redis failed (%s); retrying in %.2fs", error, delay)
                await _sleep_unless(stop, delay)
                continue
            except redis.exceptions.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                log.warning("consumer group missing (%s); creating it again", error)
                self.consumer.forget_groups()
                continue
            backoff.reset()
            if entries:
                await self.process(entries)
            if time.monotonic() - last_stats >= STATS_EVERY_S:
                log.info("listener: %s", self.stats.line())
                last_stats = time.monotonic()
        return self.stats


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
