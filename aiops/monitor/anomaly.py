"""A metric anomaly detector per (service, metric): an EWMA baseline with a robust z-score.

For each sample x of a metric, with the baseline mean m and the EWMA d of absolute
deviations |x - m|, the scale is s = sqrt(pi/2) * d (for normal noise the mean absolute
deviation is sigma * sqrt(2/pi)), floored so a flat series does not divide by zero, and
z = (x - m) / s.

- Warm-up: the first `warmup` samples only learn (a running average, then the EWMA);
  nothing is raised before the baseline has seen them.
- Robustness: a sample beyond the alert threshold moves the baseline only as far as the
  threshold (winsorised), so one spike does not drag the baseline or inflate the scale.
- Hysteresis: an anomaly begins after `enter_after` consecutive samples at |z| >= z_enter
  and ends after `exit_after` consecutive samples at |z| < z_exit (z_exit < z_enter). While
  anomalous the baseline is frozen, so a sustained shift stays one anomaly, not a storm,
  and ends with one recovery.
- A shift that lasts `rebaseline_after` samples is the new normal: the state warms up
  again from the current level, and the anomaly ends (marked rebaselined).

This module is pure (no I/O); aiops/monitor/anomaly_consumer.py feeds it from the event
streams and publishes what it returns.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard

from pydantic import BaseModel, Field, model_validator

from aiops.events.envelope import Event, EventType

_SQRT_HALF_PI: Final = math.sqrt(math.pi / 2)
ANOMALY_RESOLVED: Final = "AnomalyResolved"
# numeric payload fields that identify rather than measure
IGNORED_FIELDS: Final = frozenset(
    {"timestamp", "ts", "time", "pid", "port", "id", "status_code", "code", "version"}
)
_METRIC_SUFFIXES: Final = ("metric", "metrics", "metricreport")

MetricKey = tuple[str, str]


class DetectorConfig(BaseModel):
    alpha: float = Field(default=0.05, gt=0, lt=1, description="EWMA weight of a new sample")
    warmup: int = Field(default=30, ge=2)
    z_enter: float = Field(default=4.0, gt=0)
    z_exit: float | None = Field(default=None, gt=0, description="default: z_enter / 2")
    enter_after: int = Field(default=3, ge=1)
    exit_after: int = Field(default=3, ge=1)
    min_scale_abs: float = Field(default=1e-6, gt=0)
    # A metric that sits flat (latency_ms 0 while no requests come, memory at 43.0%) has
    # next to no spread, and then any real sample is "a million sigma": the first demo runs
    # opened incidents for a 6 ms request. The floor is in the metric's own units.
    min_scale_by_metric: dict[str, float] = Field(
        default_factory=lambda: {
            "latency_ms": 5.0,
            "memory_usage": 1.0,
            "cpu_usage": 1.0,
            "error_rate": 0.01,
            "queue_depth": 2.0,
            "rss_mb": 8.0,
        }
    )
    min_scale_rel: float = Field(default=0.01, ge=0, description="floor, fraction of |mean|")
    rebaseline_after: int = Field(default=500, ge=2)

    @model_validator(mode="after")
    def _exit_below_enter(self) -> DetectorConfig:
        if self.z_exit is None:
            self.z_exit = self.z_enter / 2
        if self.z_exit > self.z_enter:
            raise ValueError("z_exit must not exceed z_enter")
        return self

    @property
    def exit_z(self) -> float:
        return self.z_exit if self.z_exit is not None else self.z_enter / 2


class MetricState(BaseModel):
    """The baseline of one (service, metric); small, so it can be snapshotted as JSON."""

    n: int = 0
    mean: float = 0.0
    dev: float = 0.0
    anomalous: bool = False
    streak: int = 0
    anomalous_for: int = 0
    direction: int = 0


@dataclass(frozen=True)
class Signal:
    kind: Literal["anomaly", "recovered"]
    service: str
    metric: str
    value: float
    baseline: float
    scale: float
    z: float
    samples: int
    anomalous_for: int = 0
    rebaselined: bool = False

    @property
    def direction(self) -> str:
        return "above" if self.z >= 0 else "below"


class AnomalyDetector:
    """The states of many (service, metric) pairs in an LRU of bounded size."""

    def __init__(
        self,
        config: DetectorConfig | None = None,
        capacity: int = 10_000,
        on_evict: Callable[[MetricKey, MetricState], None] | None = None,
    ) -> None:
        self.config = config or DetectorConfig()
        self._states: OrderedDict[MetricKey, MetricState] = OrderedDict()
        self._capacity = max(1, capacity)
        self.on_evict = on_evict

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: MetricKey) -> bool:
        return key in self._states

    def items(self) -> Iterator[tuple[MetricKey, MetricState]]:
        return iter(list(self._states.items()))

    def state(self, key: MetricKey) -> MetricState | None:
        return self._states.get(key)

    def set_capacity(self, capacity: int) -> None:
        """Resize at run time; shrinking evicts the least recently seen."""
        self._capacity = max(1, capacity)
        self._trim()

    def load(self, key: MetricKey, state: MetricState) -> None:
        """Put a state back (a snapshot from before a restart)."""
        self._states[key] = state
        self._states.move_to_end(key)
        self._trim()

    def _trim(self) -> None:
        while len(self._states) > self._capacity:
            key, state = self._states.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(key, state)

    def observe(self, service: str, metric: str, value: float) -> Signal | None:
        """Feed one sample; a Signal when an anomaly begins or ends."""
        if not math.isfinite(value):
            return None
        key = (service, metric)
        state = self._states.get(key)
        if state is None:
            state = MetricState()
            self._states[key] = state
            self._trim()
        else:
            self._states.move_to_end(key)
        return self._step(key, state, value)

    def _scale(self, key: MetricKey, state: MetricState) -> float:
        c = self.config
        floor = max(c.min_scale_abs, c.min_scale_by_metric.get(key[1], 0.0))
        return max(_SQRT_HALF_PI * state.dev, floor, c.min_scale_rel * abs(state.mean))

    def _learn(self, state: MetricState, value: float, alpha: float) -> None:
        deviation = abs(value - state.mean)
        state.mean += alpha * (value - state.mean)
        state.dev += alpha * (deviation - state.dev)

    def _step(self, key: MetricKey, state: MetricState, value: float) -> Signal | None:
        c = self.config
        if state.n == 0:
            state.mean, state.dev, state.n = value, 0.0, 1
            return None
        scale = self._scale(key, state)
        z = (value - state.mean) / scale
        if state.n < c.warmup:
            # a running average first, so the early baseline is not the first sample's
            self._learn(state, value, max(c.alpha, 1 / (state.n + 1)))
            state.n += 1
            return None
        state.n += 1
        if state.anomalous:
            return self._while_anomalous(key, state, value, z, scale)
        return self._while_normal(key, state, value, z, scale)

    def _while_normal(
        self, key: MetricKey, state: MetricState, value: float, z: float, scale: float
    ) -> Signal | None:
        c = self.config
        if abs(z) >= c.z_enter:
            direction = 1 if z > 0 else -1
            state.streak = state.streak + 1 if direction == state.direction else 1
            state.direction = direction
        else:
            state.streak = 0
            state.direction = 0
        if state.streak >= c.enter_after:
            state.anomalous, state.streak, state.anomalous_for = True, 0, 0
            return self._signal("anomaly", key, state, value, z, scale)
        # winsorised: an outlier moves the baseline no further than the threshold would
        clipped = state.mean + max(-c.z_enter, min(c.z_enter, z)) * scale
        self._learn(state, clipped, c.alpha)
        return None

    def _while_anomalous(
        self, key: MetricKey, state: MetricState, value: float, z: float, scale: float
    ) -> Signal | None:
        c = self.config
        state.anomalous_for += 1
        if abs(z) < c.exit_z:
            state.streak += 1
            self._learn(state, value, c.alpha)
        else:
            state.streak = 0
        if state.streak >= c.exit_after:
            signal = self._signal("recovered", key, state, value, z, scale)
            state.anomalous, state.streak, state.direction, state.anomalous_for = False, 0, 0, 0
            return signal
        if state.anomalous_for >= c.rebaseline_after:
            signal = self._signal("recovered", key, state, value, z, scale, rebaselined=True)
            # the shifted level is the new normal: learn it from scratch
            state.n, state.mean, state.dev = 1, value, 0.0
            state.anomalous, state.streak, state.direction, state.anomalous_for = False, 0, 0, 0
            return signal
        return None

    def _signal(
        self,
        kind: Literal["anomaly", "recovered"],
        key: MetricKey,
        state: MetricState,
        value: float,
        z: float,
        scale: float,
        rebaselined: bool = False,
    ) -> Signal:
        return Signal(
            kind=kind,
            service=key[0],
            metric=key[1],
            value=value,
            baseline=round(state.mean, 6),
            scale=round(scale, 6),
            z=round(z, 3),
            samples=state.n,
            anomalous_for=state.anomalous_for,
            rebaselined=rebaselined,
        )


def is_metric_event(event: Event) -> bool:
    """MetricReport, or a custom type named like one (...Metric, ...Metrics)."""
    if event.event_type == EventType.METRIC_REPORT:
        return True
    return event.event_type.lower().endswith(_METRIC_SUFFIXES)


def metric_samples(event: Event) -> list[tuple[str, float]]:
    """(metric, value) pairs of a metric event: `{"metric": name, "value": x}`, the numbers
    in `payload.metrics`, else every numeric top-level payload field (not booleans, not
    identifiers such as pid or port)."""
    if not is_metric_event(event):
        return []
    payload = event.payload
    name, value = payload.get("metric"), payload.get("value")
    if isinstance(name, str) and name and _is_number(value):
        return [(name, float(value))]
    source: dict[str, Any] = (
        payload["metrics"] if isinstance(payload.get("metrics"), dict) else payload
    )
    return [
        (key, float(item))
        for key, item in source.items()
        if key not in IGNORED_FIELDS and _is_number(item)
    ]


def _is_number(value: object) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
