"""The Redis side of the listener: one consumer group per stream, reads, claims, acks and
dead letters.

Entries come from three places: this consumer's own pending entries when it starts (a
restart under the same name), entries other consumers left pending longer than
claim_idle_ms (XAUTOCLAIM: they died), and new entries (XREADGROUP >).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions

log = logging.getLogger(__name__)

# An entry delivered this often was never acknowledged: it keeps killing listeners, so it
# goes to the dead-letter stream instead of taking the next one down.
MAX_DELIVERIES: Final = 10
# Stream discovery is a SCAN; new streams are picked up this often.
DISCOVER_EVERY_S: Final = 5.0
# A consumer with nothing pending and idle this long belonged to a listener that is gone.
FORGET_CONSUMER_IDLE_MS: Final = 3_600_000
DEAD_FIELDS: Final = ("dead:reason", "dead:stream", "dead:entry_id", "dead:at", "dead:consumer")


@dataclass(frozen=True)
class Entry:
    stream: str
    entry_id: str
    # None: the entry was trimmed or deleted before anyone processed it
    fields: dict[bytes, bytes] | None
    deliveries: int = 1


@dataclass
class ConsumerStats:
    read: int = 0
    claimed: int = 0
    acked: int = 0
    dead_lettered: int = 0


def listener_counters_key(group: str) -> str:
    """The Redis hash of counters every listener of a group adds to (stale, ...)."""
    return f"aiops:listener-counters:{group}"


def as_text(value: object) -> str:
    """A Redis reply item as text (the clients here are made without decode_responses)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def split_patterns(value: str) -> list[str]:
    """AIOPS_LISTENER_STREAMS: comma-separated stream names or glob patterns."""
    return [p.strip() for p in value.split(",") if p.strip()]


async def matching_streams(
    client: aioredis.Redis, patterns: Sequence[str], *, exclude: str, only_existing: bool
) -> list[str]:
    """Streams named by the patterns, never `exclude` (the dead-letter stream). A plain
    name counts even before its stream exists unless only_existing."""
    found: set[str] = set()
    for pattern in patterns:
        if not any(ch in pattern for ch in "*?["):
            if not only_existing or await client.exists(pattern):
                found.add(pattern)
            continue
        async for key in client.scan_iter(match=pattern, count=1000, _type="stream"):
            found.add(as_text(key))
    found.discard(exclude)
    return sorted(found)


def dead_letter_fields(
    entry: Entry, reason: str, consumer: str, now: datetime | None = None
) -> dict[bytes | str, bytes | str]:
    """The original fields, untouched, plus dead:* fields saying why and where from.

    An original field that happens to be named like one of ours is kept as orig:<name>.
    """
    fields: dict[bytes | str, bytes | str] = {}
    for name, value in (entry.fields or {}).items():
        key = as_text(name) if isinstance(name, bytes) else name
        fields["orig:" + key if key in DEAD_FIELDS else name] = value
    fields["dead:reason"] = reason
    fields["dead:stream"] = entry.stream
    fields["dead:entry_id"] = entry.entry_id
    fields["dead:at"] = (now or datetime.now(UTC)).isoformat()
    fields["dead:consumer"] = consumer
    return fields


class StreamConsumer:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        patterns: Sequence[str],
        group: str,
        consumer: str,
        dead_letter_stream: str,
        batch_size: int,
        block_ms: int,
        claim_idle_ms: int,
        dead_letter_maxlen: int,
    ) -> None:
        self.redis = client
        self.patterns = list(patterns)
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.dead_letter_maxlen = dead_letter_maxlen
        self.streams: list[str] = []
        self.stats = ConsumerStats()
        self._with_group: set[str] = set()
        self._discovered_at = -1e9
        self._claimed_at = -1e9
        self._own_pending_done: set[str] = set()
        self._claim_cursor: dict[str, str] = {}

    # --- streams and groups ---

    async def discover(self, *, force: bool = False) -> list[str]:
        """The streams matching the patterns (never the dead-letter stream), each with the
        group created if missing."""
        now = time.monotonic()
        if not force and now - self._discovered_at < DISCOVER_EVERY_S:
            return self.streams
        found = await matching_streams(
            self.redis, self.patterns, exclude=self.dead_letter_stream, only_existing=False
        )
        for name in found:
            if name not in self._with_group:
                await self.ensure_group(name)
        self.streams = found
        self._discovered_at = now
        return self.streams

    async def ensure_group(self, stream: str) -> None:
        try:
            # From 0: entries published before the first listener ever ran are not skipped.
            await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            log.info("created consumer group %s on %s", self.group, stream)
        except redis.exceptions.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._with_group.add(stream)

    def forget_groups(self) -> None:
        """After NOGROUP (Redis lost its data, or someone deleted the group): recreate."""
        self._with_group.clear()
        self._discovered_at = -1e9

    # --- reading ---

    async def read_own_pending(self) -> list[Entry]:
        """Entries delivered to this consumer name and never acknowledged (a restart under
        the same name); [] once there are none left. Process each batch before the next."""
        await self.discover()
        for stream in self.streams:
            if stream in self._own_pending_done:
                continue
            entries = await self._read_own_pending(stream)
            if entries:
                return entries
            self._own_pending_done.add(stream)
        return []

    async def read(self, *, block_ms: int | None = None) -> list[Entry]:
        """The next batch: entries of dead consumers when a claim is due, else new ones,
        waiting for them at most block_ms (less than the configured time only)."""
        await self.discover()
        if not self.streams:
            # nothing to read yet; wait like XREADGROUP would, then look again
            await asyncio.sleep(min(self.block_ms, 1000) / 1000)
            await self.discover(force=True)
            return []
        if time.monotonic() - self._claimed_at >= self.claim_idle_ms / 2000:
            claimed = await self._claim()
            if claimed:
                return claimed
            self._claimed_at = time.monotonic()
        return await self._read_new(block_ms)

    async def _read_own_pending(self, stream: str) -> list[Entry]:
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {stream: "0"}, count=self.batch_size
        )
        entries = self._entries(reply)
        self.stats.read += len(entries)
        return entries

    async def _read_new(self, block_ms: int | None = None) -> list[Entry]:
        block = self.block_ms if block_ms is None else min(block_ms, self.block_ms)
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.streams, ">"),
            count=self.batch_size,
            block=block or None,
        )
        entries = self._entries(reply)
        self.stats.read += len(entries)
        return entries

    def _entries(self, reply: Any) -> list[Entry]:
        if not reply:
            return []
        # RESP2 (the client is made without protocol=3): [[stream, [(id, fields), ...]], ...]
        entries: list[Entry] = []
        for stream, rows in reply:
            name = as_text(stream)
            entries += [Entry(name, entry_id.decode(), fields) for entry_id, fields in rows]
        return entries

    async def _claim(self) -> list[Entry]:
        """Entries idle longer than claim_idle_ms under other consumers: they are ours now."""
        claimed: list[Entry] = []
        for stream in self.streams:
            cursor = self._claim_cursor.get(stream, "0-0")
            reply = await self.redis.xautoclaim(
                stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=cursor,
                count=self.batch_size,
            )
            next_cursor, rows = as_text(reply[0]), reply[1]
            self._claim_cursor[stream] = next_cursor
            vanished = False
            for entry_id, fields in rows:
                if entry_id is None:
                    vanished = True
                    continue
                claimed.append(Entry(stream, as_text(entry_id), fields))
            if vanished:
                claimed += await self._vanished(stream)
            if len(claimed) >= self.batch_size:
                break
        if claimed:
            counts = await self._deliveries(claimed)
            claimed = [
                Entry(e.stream, e.entry_id, e.fields, counts.get((e.stream, e.entry_id), 1))
                for e in claimed
            ]
            self.stats.claimed += len(claimed)
            log.info("claimed %d entries left pending by another consumer", len(claimed))
        else:
            await self._forget_idle_consumers()
        return claimed

    async def _vanished(self, stream: str) -> list[Entry]:
        # Redis 6.2 reports a claimed entry that was trimmed as nil, without its id; find
        # such ids among our pending ones so they can be acknowledged rather than stick.
        pending = await self.redis.xpending_range(
            stream, self.group, min="-", max="+", count=self.batch_size, consumername=self.consumer
        )
        gone: list[Entry] = []
        for item in pending:
            entry_id = as_text(item["message_id"])
            if not await self.redis.xrange(stream, entry_id, entry_id):
                gone.append(Entry(stream, entry_id, None))
        return gone

    async def _deliveries(self, entries: Sequence[Entry]) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        by_stream: dict[str, list[str]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e.entry_id)
        for stream, ids in by_stream.items():
            ordered = sorted(ids, key=_id_key)
            rows = await self.redis.xpending_range(
                stream,
                self.group,
                min=ordered[0],
                max=ordered[-1],
                count=len(ordered) * 2 + 10,
                consumername=self.consumer,
            )
            for row in rows:
                counts[(stream, as_text(row["message_id"]))] = int(row["times_delivered"])
        return counts

    async def _forget_idle_consumers(self) -> None:
        for stream in self.streams:
            for info in await self.redis.xinfo_consumers(stream, self.group):
                name = as_text(info["name"])
                if (
                    name != self.consumer
                    and int(info["pending"]) == 0
                    and int(info["idle"]) > FORGET_CONSUMER_IDLE_MS
                ):
                    await self.redis.xgroup_delconsumer(stream, self.group, name)

    # --- acknowledging ---

    async def ack(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        by_stream: dict[str, list[str]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e.entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()
        self.stats.acked += len(entries)

    async def dead_letter(self, items: Sequence[tuple[Entry, str]]) -> None:
        """Move entries to the dead-letter stream and acknowledge them, atomically."""
        if not items:
            return
        now = datetime.now(UTC)
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry, reason in items:
                pipe.xadd(
                    self.dead_letter_stream,
                    dead_letter_fields(entry, reason, self.consumer, now),  # type: ignore[arg-type]
                    maxlen=self.dead_letter_maxlen,
                    approximate=True,
                )
                pipe.xack(entry.stream, self.group, entry.entry_id)
            await pipe.execute()
        self.stats.dead_lettered += len(items)
        self.stats.acked += len(items)
        for entry, reason in items:
            log.warning("dead-lettered %s %s: %s", entry.stream, entry.entry_id, reason)

    async def count_stale(self, count: int) -> None:
        """Add to the group's shared count of events stored but never acted on (stale)."""
        await self.redis.hincrby(listener_counters_key(self.group), "stale", count)

    async def leave(self) -> None:
        """On a clean exit, remove this consumer from groups where it holds nothing."""
        for stream in self.streams:
            try:
                pending = await self.redis.xpending_range(
                    stream, self.group, min="-", max="+", count=1, consumername=self.consumer
                )
                if not pending:
                    await self.redis.xgroup_delconsumer(stream, self.group, self.consumer)
            except redis.exceptions.RedisError as error:
                log.debug("could not leave %s: %s", stream, error)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
