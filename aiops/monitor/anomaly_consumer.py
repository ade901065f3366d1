"""The anomaly detector on the event streams: its own consumer group (AIOPS_ANOMALY_GROUP),
so it reads every metric event whatever the listener does, and publishes Anomaly and
AnomalyResolved events.

Baselines live in memory in an LRU (anomaly_cache_size, a run-time limit) and are
snapshotted to Redis (one key per service and metric, with a TTL) every few seconds and
when evicted, so a restart or an eviction does not start the warm-up from zero.

Anomaly events are published before the batch is acknowledged; their ids derive from the
stream entry, so a batch redelivered after a crash publishes the same events again and
the event store keeps each once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import ValidationError

from aiops.config import Settings
from aiops.events.consumer import Entry, StreamConsumer, split_patterns
from aiops.events.envelope import Event, EventType, InvalidEvent, Severity, decode_entry
from aiops.events.mesh import EventMesh
from aiops.events.retry import TRANSIENT, Backoff
from aiops.monitor.anomaly import (
    ANOMALY_RESOLVED,
    AnomalyDetector,
    DetectorConfig,
    MetricKey,
    MetricState,
    Signal,
    metric_samples,
)
from aiops.monitor.limits import LimitsCache
from aiops.monitor.models import MONITOR_SOURCE

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX: Final = "aiops:anomaly:"
SNAPSHOT_TTL_S: Final = 7 * 24 * 3600
SNAPSHOT_EVERY_S: Final = 5.0
_EVENT_NAMESPACE: Final = uuid.UUID("3c1f9e0a-6b2d-5a47-8e91-0d4c7b6a5f32")


@dataclass
class AnomalyStats:
    entries: int = 0
    samples: int = 0
    anomalies: int = 0
    recoveries: int = 0
    restored: int = 0
    snapshots: int = 0

    def line(self) -> str:
        return (
            f"{self.entries} entries, {self.samples} samples, {self.anomalies} anomalies, "
            f"{self.recoveries} recoveries, {self.restored} baselines restored"
        )


def snapshot_key(prefix: str, key: MetricKey) -> str:
    service, metric = key
    return f"{prefix}{quote(service, safe='')}:{quote(metric, safe='')}"


class AnomalyMonitor:
    def __init__(
        self,
        consumer: StreamConsumer,
        detector: AnomalyDetector,
        mesh: EventMesh,
        *,
        stream: str,
        max_event_bytes: int = 1_048_576,
        limits: LimitsCache | None = None,
        snapshot_prefix: str = SNAPSHOT_PREFIX,
        snapshot_ttl_s: int = SNAPSHOT_TTL_S,
    ) -> None:
        self.consumer = consumer
        self.detector = detector
        self.mesh = mesh
        self.stream = stream
        self.max_event_bytes = max_event_bytes
        self.limits = limits
        self.snapshot_prefix = snapshot_prefix
        self.snapshot_ttl_s = snapshot_ttl_s
        self.stats = AnomalyStats()
        self._dirty: set[MetricKey] = set()
        # states evicted from the LRU before their latest values were snapshotted
        self._evicted: dict[MetricKey, MetricState] = {}
        self._backoff = Backoff(cap=5.0)
        if detector.on_evict is not None:
            raise ValueError("give AnomalyMonitor a detector without its own on_evict")
        detector.on_evict = self._on_evict

    @property
    def redis(self) -> aioredis.Redis:
        return self.consumer.redis

    def _on_evict(self, key: MetricKey, state: MetricState) -> None:
        if key in self._dirty:
            self._dirty.discard(key)
            self._evicted[key] = state

    async def run(self, stop: asyncio.Event) -> AnomalyStats:
        """Consume until stop is set; the batch in hand is finished and snapshotted."""
        await self.consumer.discover(force=True)
        last_snapshot = time.monotonic()
        reading_own = True
        while not stop.is_set():
            try:
                await self._apply_limits()
                entries = (
                    await self.consumer.read_own_pending()
                    if reading_own
                    else await self.consumer.read()
                )
                if reading_own and not entries:
                    reading_own = False
                    continue
                if entries:
                    await self.process(entries)
                if time.monotonic() - last_snapshot >= SNAPSHOT_EVERY_S:
                    await self.snapshot()
                    last_snapshot = time.monotonic()
                self._backoff.reset()
            except TRANSIENT as error:
                delay = self._backoff.next_delay()
                log.warning(
                    "anomaly detector: Redis unavailable (%s); retry in %.2fs", error, delay
                )
                await asyncio.sleep(delay)
            except redis.exceptions.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                self.consumer.forget_groups()
                await self.consumer.discover(force=True)
        await self.snapshot()
        await self.consumer.leave()
        return self.stats

    async def _apply_limits(self) -> None:
        if self.limits is None:
            return
        size = (await self.limits.current()).anomaly_cache_size
        if size != self.detector.capacity:
            log.info("anomaly baselines kept in memory: %d -> %d", self.detector.capacity, size)
            self.detector.set_capacity(size)

    async def process(self, entries: Sequence[Entry]) -> list[Event]:
        """Feed the metric samples of a batch to the detector, publish what it signals,
        then acknowledge the batch (invalid entries too: the listener dead-letters them)."""
        samples: list[tuple[Entry, Event, str, float]] = []
        for entry in entries:
            if entry.fields is None:
                continue
            try:
                event = decode_entry(
                    entry.stream, entry.entry_id, entry.fields, self.max_event_bytes
                )
            except InvalidEvent:
                continue
            if event.replay:
                continue  # history sent again: its anomalies were raised the first time
            samples += [(entry, event, metric, value) for metric, value in metric_samples(event)]
        await self._restore({(e.service or e.source, metric) for _, e, metric, _ in samples})
        published: list[Event] = []
        for entry, event, metric, value in samples:
            key = (event.service or event.source, metric)
            signal = self.detector.observe(key[0], metric, value)
            self._dirty.add(key)
            self.stats.samples += 1
            if signal is not None:
                published.append(self._event(signal, entry, event))
                if signal.kind == "anomaly":
                    self.stats.anomalies += 1
                else:
                    self.stats.recoveries += 1
        if published:
            await self.mesh.publish_many(published, stream=self.stream)
            for item in published:
                log.info("%s: %s", item.event_type, item.payload.get("message"))
        await self.consumer.ack(list(entries))
        self.stats.entries += len(entries)
        return published

    def _event(self, signal: Signal, entry: Entry, cause: Event) -> Event:
        anomaly = signal.kind == "anomaly"
        what = f"{signal.metric} of {signal.service}"
        return Event(
            id=uuid.uuid5(
                _EVENT_NAMESPACE, f"{entry.stream}/{entry.entry_id}/{signal.metric}/{signal.kind}"
            ),
            event_type=EventType.ANOMALY if anomaly else ANOMALY_RESOLVED,
            source=MONITOR_SOURCE,
            service=signal.service,
            severity=Severity.WARNING if anomaly else Severity.INFO,
            correlation_id=cause.correlation_id,
            causation_id=cause.id,
            payload={
                # stable text: one problem per service, metric and direction
                "message": (
                    f"{what} is anomalous: {signal.direction} its baseline"
                    if anomaly
                    else f"{what} is back to its baseline"
                ),
                "service": signal.service,
                "metric": signal.metric,
                "value": signal.value,
                "baseline": signal.baseline,
                "scale": signal.scale,
                "z": signal.z,
                "direction": signal.direction,
                "samples": signal.samples,
                **({} if anomaly else {"anomalous_for": signal.anomalous_for}),
                **({"rebaselined": True} if signal.rebaselined else {}),
            },
        )

    async def _restore(self, keys: set[MetricKey]) -> None:
        missing = [key for key in keys if key not in self.detector]
        if not missing:
            return
        # evicted but not yet snapshotted: the freshest copy is still here
        from_memory = [key for key in missing if key in self._evicted]
        for key in from_memory:
            self.detector.load(key, self._evicted.pop(key))
            self._dirty.add(key)
        missing = [key for key in missing if key not in from_memory]
        if not missing:
            return
        values = await self.redis.mget([snapshot_key(self.snapshot_prefix, k) for k in missing])
        for key, raw in zip(missing, values, strict=True):
            if raw is None:
                continue
            try:
                state = MetricState.model_validate_json(raw)
            except ValidationError:
                continue  # a snapshot from an incompatible version: warm up again
            self.detector.load(key, state)
            self.stats.restored += 1

    async def snapshot(self) -> int:
        """Write the baselines changed since the last snapshot; returns how many."""
        states: dict[MetricKey, MetricState] = dict(self._evicted)
        for key in self._dirty:
            state = self.detector.state(key)
            if state is not None:
                states[key] = state
        if not states:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, state in states.items():
                pipe.set(
                    snapshot_key(self.snapshot_prefix, key),
                    state.model_dump_json(),
                    ex=self.snapshot_ttl_s,
                )
            await pipe.execute()
        self._dirty.clear()
        self._evicted.clear()
        self.stats.snapshots += 1
        return len(states)


def anomaly_monitor_from_settings(
    settings: Settings,
    client: aioredis.Redis,
    mesh: EventMesh,
    *,
    consumer: str,
    limits: LimitsCache | None = None,
) -> AnomalyMonitor:
    """The detector as `aiops monitor` runs it: its own group on AIOPS_ANOMALY_STREAMS,
    the listener's batch and claim timings."""
    stream_consumer = StreamConsumer(
        client,
        patterns=split_patterns(settings.anomaly_streams),
        group=settings.anomaly_group,
        consumer=consumer,
        dead_letter_stream=settings.dead_letter_stream,
        batch_size=settings.listener_batch_size,
        block_ms=settings.listener_block_ms,
        claim_idle_ms=settings.listener_claim_idle_ms,
        dead_letter_maxlen=settings.events_maxlen,
    )
    detector = AnomalyDetector(
        DetectorConfig(warmup=settings.anomaly_warmup, z_enter=settings.anomaly_z),
        capacity=limits.last.anomaly_cache_size if limits else settings.anomaly_cache_size,
    )
    return AnomalyMonitor(
        stream_consumer,
        detector,
        mesh,
        stream=settings.monitor_stream,
        max_event_bytes=settings.events_max_payload_bytes,
        limits=limits,
    )
