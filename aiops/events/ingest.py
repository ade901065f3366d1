"""The listener's pipeline, batch after batch (the next is read and validated while the
current one is stored, and the one after is already being read):

    read -> validate -> trust (aiops/events/trust.py) -> dead-letter the invalid and the
         untrusted (and acknowledge them) -> store the valid (one transaction) -> route
         -> acknowledge the valid

An entry is acknowledged only once its outcome is durable (stored and routed, or in the
dead-letter stream), so a crash anywhere means redelivery, and the store's idempotence on
event id turns redelivery into exactly-once storage.

Routing and acknowledging a batch overlap storing the next ones (up to ROUTING_IN_FLIGHT
batches and ROUTING_IN_FLIGHT_ENTRIES entries): in a storm, the signals to an incident go
once per AIOPS_INCIDENT_COALESCE_S (or at Temporal's pace if slower), each carrying the
merged observations of the batches stored meanwhile (aiops/events/routing.py), while
storing goes at PostgreSQL's. When that many wait, the router sends what it holds at once.

Stale backlog: an event that waited in its stream longer than stale_after_s when read
(its entry id is the time Redis accepted it), as after a long outage of the listeners, is
stored and counted but never acted on: it opens no incident, signals none, and reaches no
subscription. The count is in the listener's stats, in a log line, and in Redis for
`aiops events health` (stale_total).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import asyncpg
import redis.exceptions
from temporalio.service import RPCError

from aiops.events.cancel import cancel_and_wait
from aiops.events.consumer import MAX_DELIVERIES, Entry, StreamConsumer
from aiops.events.envelope import Event, InvalidEvent, decode_entry
from aiops.events.retry import TRANSIENT, Backoff, retrying
from aiops.events.routing import (
    IncidentRouter,
    Subscription,
    deliver,
    is_transient_temporal_error,
)
from aiops.events.store import EventStore, Located, StoreResult
from aiops.events.trust import EventTrust

log = logging.getLogger(__name__)

STATS_EVERY_S: Final = 30.0
# batches stored and still being routed (then acknowledged) while the next are stored
ROUTING_IN_FLIGHT: Final = 64
# ...and their entries: a storm's batches wait out the router's interval, so this many
# entries (and their events, in memory) may wait for it; at 25,000 events/s a 0.25 s
# interval holds about 6,000
ROUTING_IN_FLIGHT_ENTRIES: Final = 20_000
# streams quiet this long (a read waiting for new entries came back empty): the router's
# held observations go without waiting out its interval
QUIET_S: Final = 0.05
# entries validated between two turns of the event loop in prepare_async
YIELD_EVERY: Final = 32


@dataclass
class IngestStats:
    batches: int = 0
    entries: int = 0
    stored: int = 0
    repeats: int = 0
    dead_lettered: int = 0
    # of those dead-lettered: valid events their stream may not send (trust)
    untrusted: int = 0
    vanished: int = 0
    problems: int = 0
    observations: int = 0
    # stored, never acted on: they waited in the stream longer than stale_after_s
    stale: int = 0

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in vars(self).items())


@dataclass
class Batch:
    """A batch read and validated, not yet stored or acknowledged."""

    entries: int
    valid: list[tuple[Entry, Event]] = field(default_factory=list)
    invalid: list[tuple[Entry, str]] = field(default_factory=list)
    untrusted: int = 0
    # the same event twice in the batch: stored once, both acknowledged
    repeats: list[Entry] = field(default_factory=list)
    vanished: list[Entry] = field(default_factory=list)


@dataclass
class BatchReport:
    entries: int = 0
    stored: int = 0
    repeats: int = 0
    dead_lettered: int = 0
    observations: int = 0
    stale: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass
class _Stored:
    """A batch stored (or dead-lettered), not yet routed nor acknowledged."""

    batch: Batch
    result: StoreResult
    conflicts: list[tuple[int, str]]
    repeats: set[int]


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
        trust: EventTrust | None = None,
        stale_after_s: float = 0.0,
    ) -> None:
        self.consumer = consumer
        # 0: every event is acted on, however long it waited
        self.stale_after_s = stale_after_s
        self.store = store
        self.max_event_bytes = max_event_bytes
        self.incidents = incidents
        self.subscriptions = list(subscriptions)
        # None: every valid event passes (no stream is checked against its producer)
        self.trust = trust
        self.stats = IngestStats()
        self._read_backoff = Backoff()

    # --- one batch ---

    def prepare(self, entries: Sequence[Entry]) -> Batch:
        """Validate a batch (CPU only, no I/O): what to store, what to dead-letter."""
        batch = Batch(entries=len(entries))
        for _ in self._validate(entries, batch):
            pass
        return batch

    async def prepare_async(self, entries: Sequence[Entry]) -> Batch:
        """prepare(), letting the event loop in every few entries: the batch being stored
        meanwhile has its PostgreSQL replies handled promptly, not after the whole batch."""
        batch = Batch(entries=len(entries))
        for _ in self._validate(entries, batch):
            await asyncio.sleep(0)
        return batch

    def _validate(self, entries: Sequence[Entry], batch: Batch) -> Iterator[None]:
        first_by_id: dict[uuid.UUID, Event] = {}
        check = self.trust.check if self.trust is not None else None
        for n, entry in enumerate(entries, 1):
            if n % YIELD_EVERY == 0:
                yield
            if entry.fields is None:
                batch.vanished.append(entry)
                continue
            if entry.deliveries > MAX_DELIVERIES:
                batch.invalid.append(
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
                batch.invalid.append((entry, error.reason))
                continue
            if check is not None:
                # before storing and routing: an untrusted event is stored nowhere else
                refused = check(entry.stream, event)
                if refused is not None:
                    batch.invalid.append((entry, refused))
                    batch.untrusted += 1
                    continue
            earlier = first_by_id.get(event.id)
            if earlier is None:
                first_by_id[event.id] = event
                batch.valid.append((entry, event))
            elif _same_event(earlier, event):
                batch.repeats.append(entry)
            else:
                batch.invalid.append(
                    (
                        entry,
                        "duplicate event id with different content: "
                        f"{event.id} came earlier in this batch",
                    )
                )

    async def commit(self, batch: Batch) -> BatchReport:
        """Dead-letter, store, route, acknowledge: each step retried until it holds. The
        batch is alone (nothing else goes on meanwhile), so its observations are not held
        for the router's interval."""
        return await self._finish(await self._store_batch(batch), hold=False)

    async def _store_batch(self, batch: Batch) -> _Stored:
        valid = batch.valid
        if batch.vanished:
            log.warning("%d entries were trimmed before they were processed", len(batch.vanished))
        await self._dead_letter(batch.invalid)

        to_store = [
            (i, Located(event, entry.stream, entry.entry_id))
            for i, (entry, event) in enumerate(valid)
            if not event.replay  # replays are stored already; they come back for routing
        ]
        result = await self._store([item for _, item in to_store])
        conflicts = [(to_store[i][0], reason) for i, reason in result.conflicts]
        repeats = {to_store[i][0] for i in result.repeats}
        await self._dead_letter([(valid[i][0], reason) for i, reason in conflicts])
        return _Stored(batch, result, conflicts, repeats)

    async def _finish(self, stored: _Stored, *, hold: bool = True) -> BatchReport:
        """Route what is fresh, then acknowledge: the batch's outcome is durable (its
        problems' observations with Temporal, after the router's interval when held)."""
        batch, result, conflicts, repeats = (
            stored.batch,
            stored.result,
            stored.conflicts,
            stored.repeats,
        )
        valid = batch.valid
        conflict_ids = {i for i, _ in conflicts}
        kept = [
            (entry, event)
            for i, (entry, event) in enumerate(valid)
            if i not in conflict_ids and i not in repeats
        ]
        fresh, stale = self._split_stale(kept)
        if stale:
            await self._report_stale(stale)
        observations = await self._route(fresh, hold=hold)

        done = [entry for i, (entry, _) in enumerate(valid) if i not in conflict_ids]
        await self._ack(done + batch.repeats + batch.vanished)

        report = BatchReport(
            entries=batch.entries,
            stored=result.stored,
            repeats=len(repeats) + len(batch.repeats),
            dead_lettered=len(batch.invalid) + len(conflicts),
            observations=observations,
            stale=len(stale),
            reasons=[r for _, r in batch.invalid] + [r for _, r in conflicts],
        )
        s = self.stats
        s.batches += 1
        s.entries += report.entries
        s.stored += report.stored
        s.repeats += report.repeats
        s.dead_lettered += report.dead_lettered
        s.untrusted += batch.untrusted
        s.vanished += len(batch.vanished)
        s.observations += report.observations
        s.stale += report.stale
        return report

    def _split_stale(
        self, items: Sequence[tuple[Entry, Event]], now: float | None = None
    ) -> tuple[list[Event], list[tuple[Entry, Event]]]:
        """(events to act on, entries too old to): by how long each waited in its stream.
        Replays are asked for by a person and always routed (to their own incidents)."""
        if self.stale_after_s <= 0:
            return [event for _, event in items], []
        oldest_ms = ((now if now is not None else time.time()) - self.stale_after_s) * 1000
        fresh: list[Event] = []
        stale: list[tuple[Entry, Event]] = []
        for entry, event in items:
            if not event.replay and entry_millis(entry.entry_id) < oldest_ms:
                stale.append((entry, event))
            else:
                fresh.append(event)
        return fresh, stale

    async def _report_stale(self, stale: Sequence[tuple[Entry, Event]]) -> None:
        oldest = min(entry_millis(entry.entry_id) for entry, _ in stale)
        waited = time.time() - oldest / 1000
        log.warning(
            "%d stale event(s) stored but not acted on: they waited up to %.0f s in the "
            "stream, longer than AIOPS_EVENTS_STALE_AFTER_S=%g (a backlog)",
            len(stale),
            waited,
            self.stale_after_s,
        )
        consumer = self.consumer
        try:
            await retrying(
                lambda: consumer.count_stale(len(stale)), "counting stale events", backoff=None
            )
        except redis.exceptions.ResponseError as error:  # never stall the stream for a counter
            log.error("stale events not counted in Redis: %s", error)

    async def process(self, entries: Sequence[Entry]) -> BatchReport:
        return await self.commit(self.prepare(entries))

    def _flush_held(self) -> None:
        if self.incidents is not None:
            self.incidents.flush()

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

    async def _route(self, events: Sequence[Event], *, hold: bool = True) -> int:
        if not events:
            return 0
        if self.subscriptions:
            await deliver(self.subscriptions, events)
        if self.incidents is None:
            return 0
        observations = self.incidents.observe(events)
        self.stats.problems += sum(o.count for o in observations)
        if observations:
            await self.incidents.signal_all(observations, hold=hold)
        # after the batch's own problems: an alert that fired and resolved in one batch
        # reaches the incident it just opened
        router = self.incidents
        try:
            await retrying(
                lambda: router.deliver_resolutions(events),
                "telling incidents their alerts resolved",
                is_transient=is_transient_temporal_error,
            )
        except RPCError as error:  # refused: the events are stored; never stall the stream
            log.error("alert resolutions not delivered: %s", error)
        return len(observations)

    # --- the loop ---

    async def run(self, stop: asyncio.Event) -> IngestStats:
        """Process batches until stop is set; batches in hand are finished first.

        Reading and validating the next batch overlaps storing the current one (a queue of
        one), so the listener computes while PostgreSQL commits.
        """
        while not stop.is_set():
            own = await self._read(self.consumer.read_own_pending)
            if own is None:
                continue
            if not own:
                break
            await self.process(own)
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
        reader = asyncio.create_task(self._read_batches(stop, queue))
        # each batch being routed, with its entries
        finishing: dict[asyncio.Task[BatchReport], int] = {}
        last_stats = time.monotonic()
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    reader.result()  # the reader failed without a last batch: raise why
                    break
                batch = getter.result()
                if batch is None:
                    break
                stored = await self._store_batch(batch)
                finishing[asyncio.create_task(self._finish(stored))] = batch.entries
                # the pipeline full: what the router holds goes now rather than after its
                # interval, or storing would stall for it
                await _reap(
                    finishing,
                    batches=ROUTING_IN_FLIGHT - 1,
                    entries=ROUTING_IN_FLIGHT_ENTRIES,
                    nudge=self._flush_held,
                )
                if time.monotonic() - last_stats >= STATS_EVERY_S:
                    log.info("listener: %s", self.stats.line())
                    last_stats = time.monotonic()
            await _reap(finishing, batches=0, entries=0, nudge=self._flush_held)
        finally:
            for task in finishing:
                task.cancel()
            await cancel_and_wait(reader)  # a cancel lost in redis-py would wait for ever
        return self.stats

    async def _read_batches(self, stop: asyncio.Event, queue: asyncio.Queue[Batch | None]) -> None:
        """Reads one batch ahead: the next XREADGROUP is on its way (Redis answers it on
        its own core) while this one is validated. A read asked for before stop is still
        processed once it returns: its entries are this consumer's now."""
        ahead: asyncio.Future[list[Entry] | None] | None = None
        # While the router may hold observations, a read waits at most quiet_ms: one that
        # comes back empty means nothing arrived that long, and what is held goes (a
        # storm never goes quiet; the end of one does not wait out the whole interval).
        # Otherwise it waits as configured: an idle listener does not ask Redis ten times a
        # second. A read asked for before a batch's first observation of an incident is
        # routed cannot keep it waiting: that one goes at once, it is never held.
        router = self.incidents
        quiet_ms = (
            max(1, int(min(QUIET_S, router.coalesce_s) * 1000))
            if router is not None and router.coalesce_s > 0
            else None
        )

        def read() -> Awaitable[list[Entry]]:
            holding = router is not None and router.holding()
            return self.consumer.read(block_ms=quiet_ms if holding else None)

        try:
            ahead = asyncio.ensure_future(self._read(read))
            while ahead is not None:
                entries = await ahead
                if entries == [] and router is not None:
                    router.flush()
                ahead = None if stop.is_set() else asyncio.ensure_future(self._read(read))
                if entries:
                    await queue.put(await self.prepare_async(entries))
        finally:
            if ahead is not None:
                # stopped by a failure or a cancel: the read ahead is not waited for
                await cancel_and_wait(ahead)
        await queue.put(None)

    async def _read(self, read: Callable[[], Awaitable[list[Entry]]]) -> list[Entry] | None:
        """One read; None after a transient failure (already waited for) or a lost group."""
        try:
            entries = await read()
        except TRANSIENT as error:
            delay = self._read_backoff.next_delay()
            log.warning("reading from Redis failed (%s); retrying in %.2fs", error, delay)
            await asyncio.sleep(delay)
            return None
        except redis.exceptions.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            log.warning("consumer group missing (%s); creating it again", error)
            self.consumer.forget_groups()
            return None
        self._read_backoff.reset()
        return entries


async def _reap(
    tasks: dict[asyncio.Task[BatchReport], int],
    *,
    batches: int,
    entries: int,
    nudge: Callable[[], None],
) -> None:
    """Wait until at most `batches` tasks with at most `entries` entries run; raise the
    first failure among those done. nudge() before each wait: nothing the tasks wait on
    may hold back for a while."""
    while tasks:
        for task in [t for t in tasks if t.done()]:
            del tasks[task]
            task.result()
        if len(tasks) <= batches and sum(tasks.values()) <= entries:
            return
        nudge()
        # a task that reaches the router only after the nudge is nudged on the next turn
        await asyncio.wait(tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)


def entry_millis(entry_id: str) -> int:
    """When Redis accepted a stream entry (the first part of its id), in ms since the epoch."""
    return int(entry_id.split("-", 1)[0])
