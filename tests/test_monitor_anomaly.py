"""The anomaly detector on series: warm-up, one alert per sustained shift, silence on noise."""

from __future__ import annotations

import random

import pytest

from aiops.events.envelope import Event
from aiops.monitor.anomaly import (
    AnomalyDetector,
    DetectorConfig,
    MetricState,
    Signal,
    metric_samples,
)


def feed(
    detector: AnomalyDetector, values: list[float], metric: str = "latency_ms"
) -> list[Signal]:
    signals = []
    for value in values:
        signal = detector.observe("api", metric, value)
        if signal is not None:
            signals.append(signal)
    return signals


def noise(rng: random.Random, n: int, mean: float = 100.0, sd: float = 5.0) -> list[float]:
    return [rng.gauss(mean, sd) for _ in range(n)]


def test_nothing_during_warm_up_even_for_wild_values() -> None:
    detector = AnomalyDetector(DetectorConfig(warmup=30))
    wild = [10.0, 10_000.0, 0.0, 5_000.0, 1.0] * 5 + [10_000.0] * 4  # 29 samples
    assert feed(detector, wild) == []
    state = detector.state(("api", "latency_ms"))
    assert state is not None and state.n == 29 and not state.anomalous


def test_sustained_shift_is_one_anomaly_then_one_recovery() -> None:
    rng = random.Random(7)
    detector = AnomalyDetector(DetectorConfig(warmup=30))
    assert feed(detector, noise(rng, 200)) == []
    shifted = feed(detector, noise(rng, 150, mean=160.0))
    assert len(shifted) == 1
    [anomaly] = shifted
    assert anomaly.kind == "anomaly" and anomaly.direction == "above"
    assert 90 < anomaly.baseline < 110 and anomaly.z >= 4 and anomaly.value > 130
    back = feed(detector, noise(rng, 100))
    assert [s.kind for s in back] == ["recovered"]
    assert back[0].anomalous_for >= 150 and not back[0].rebaselined
    # the frozen baseline did not learn the shifted level
    assert 90 < back[0].baseline < 110


def test_drop_below_baseline_is_an_anomaly_too() -> None:
    rng = random.Random(3)
    detector = AnomalyDetector()
    feed(detector, noise(rng, 100, mean=500.0, sd=10.0), metric="queue_depth")
    [signal] = feed(detector, [100.0] * 10, metric="queue_depth")
    assert signal.kind == "anomaly" and signal.direction == "below" and signal.z < -4


@pytest.mark.parametrize("seed", range(5))
def test_noise_and_isolated_spikes_raise_nothing(seed: int) -> None:
    rng = random.Random(seed)
    detector = AnomalyDetector()
    values = noise(rng, 3000)
    for i in range(100, 3000, 97):  # one spike now and then, never two in a row
        values[i] = 400.0
    assert feed(detector, values) == []
    state = detector.state(("api", "latency_ms"))
    # the spikes did not drag the baseline: winsorised learning
    assert state is not None and 97 < state.mean < 103


def test_a_single_spike_is_not_an_anomaly_but_three_in_a_row_are() -> None:
    rng = random.Random(11)
    detector = AnomalyDetector()
    feed(detector, noise(rng, 100))
    assert feed(detector, [300.0, 100.0, 300.0, 300.0, 100.0]) == []
    [signal] = feed(detector, [300.0, 300.0, 300.0])
    assert signal.kind == "anomaly"


def test_flat_series_then_a_step() -> None:
    detector = AnomalyDetector()
    assert feed(detector, [0.0] * 50, metric="error_rate") == []
    [signal] = feed(detector, [0.2] * 5, metric="error_rate")
    assert signal.kind == "anomaly" and signal.baseline < 0.01


def test_a_flat_metric_needs_a_real_change_in_its_own_units() -> None:
    # latency_ms 0 while no requests come: a 6 ms request is not an anomaly, 80 ms is
    detector = AnomalyDetector(DetectorConfig(warmup=30))
    assert feed(detector, [0.0] * 60) == []
    assert feed(detector, [6.3, 0.0, 0.0, 6.3, 5.9, 6.1]) == []
    [signal] = feed(detector, [80.0] * 5)
    assert signal.kind == "anomaly" and signal.scale == 5.0


def test_a_permanent_shift_becomes_the_new_normal() -> None:
    rng = random.Random(5)
    detector = AnomalyDetector(DetectorConfig(rebaseline_after=50, warmup=20))
    feed(detector, noise(rng, 100))
    signals = feed(detector, noise(rng, 200, mean=200.0))
    assert [s.kind for s in signals] == ["anomaly", "recovered"]
    assert signals[1].rebaselined
    state = detector.state(("api", "latency_ms"))
    assert state is not None and not state.anomalous and 190 < state.mean < 210


def test_lru_is_bounded_and_shrinks_at_run_time() -> None:
    evicted: list[tuple[str, str]] = []
    detector = AnomalyDetector(capacity=3, on_evict=lambda key, _state: evicted.append(key))
    for name in ("a", "b", "c", "d"):
        detector.observe(name, "m", 1.0)
    assert len(detector) == 3 and evicted == [("a", "m")]
    detector.observe("b", "m", 1.0)  # b is now the most recently seen
    detector.set_capacity(1)
    assert len(detector) == 1 and ("b", "m") in detector
    assert evicted == [("a", "m"), ("c", "m"), ("d", "m")]


def test_a_loaded_snapshot_skips_the_warm_up() -> None:
    detector = AnomalyDetector()
    detector.load(("api", "latency_ms"), MetricState(n=500, mean=100.0, dev=4.0))
    [signal] = feed(detector, [200.0] * 3)
    assert signal.kind == "anomaly" and signal.samples == 503


def test_metric_samples_from_payload_shapes() -> None:
    def event(event_type: str, payload: dict[str, object]) -> Event:
        return Event(event_type=event_type, source="api", payload=payload)

    assert metric_samples(
        event("MetricReport", {"memory_usage": 81.5, "healthy": True, "pid": 42, "host": "a"})
    ) == [("memory_usage", 81.5)]
    assert metric_samples(event("MetricReport", {"metric": "queue_depth", "value": 7})) == [
        ("queue_depth", 7.0)
    ]
    assert metric_samples(
        event("ImportMetrics", {"metrics": {"error_rate": 0.25, "latency_ms": 30}, "n": 3})
    ) == [("error_rate", 0.25), ("latency_ms", 30.0)]
    assert metric_samples(event("ServiceError", {"latency_ms": 30})) == []
