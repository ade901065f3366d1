"""Per-event match latency of the pattern library with 10,000 active patterns.

    .venv/bin/python bench/patterns.py [--patterns 10000] [--events 20000] [--seed 1]

A generated but varied library: 30 event types (the seed's and custom ones), 300 services,
40 metric fields (some nested, such as db.pool.waiting), every operator; patterns scoped to
a service and an event type, to an event type only, or to any event (generic thresholds,
severity sets, error codes, message regexes). Events are mostly metric reports of 3-6
metrics, then errors with messages, then health events.

Prints, in one run and on the same events: the compiled index's p50/p99 per event (from
the envelope to the list of matching patterns), the naive baseline (every pattern's rules
checked, as `PatternMatcher.scan` does) and the ratio, plus compile time and how many
patterns matched per event. Every measured event's matches are checked equal to the
baseline's. In-process, no servers: the CPU is shared, so figures vary by a few percent.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from aiops.events.envelope import Event
from aiops.patterns.matcher import PatternMatcher
from aiops.patterns.models import (
    MatchingRule,
    Operator,
    Pattern,
    PatternType,
)
from aiops.policy.models import ActionSpec

TARGET_P50_US = 100.0

EVENT_TYPES = [
    "MetricReport",
    "Anomaly",
    "ServiceError",
    "ServiceTimeout",
    "ServiceUnhealthy",
    "ImportFailed",
    *(
        f"{name}"
        for name in (
            "DiskPressure",
            "QueueBacklog",
            "CacheMissStorm",
            "GcPause",
            "ConnectionPoolExhausted",
            "CertificateExpiring",
            "ReplicationLag",
            "DeployFinished",
            "ConfigChanged",
            "RateLimited",
            "BatchJobFailed",
            "WebhookTimeout",
            "PaymentDeclined",
            "AuthFailure",
            "ThreadStarvation",
            "SlowQuery",
            "NodeNotReady",
            "PodEvicted",
            "BackupFailed",
            "LeaderElection",
            "SchemaDrift",
            "FeatureFlagFlip",
            "TokenRefreshFailed",
            "CircuitOpen",
        )
    ),
]
METRIC_TYPES = ["MetricReport", "Anomaly", "DiskPressure", "QueueBacklog", "GcPause", "SlowQuery"]
ERROR_TYPES = ["ServiceError", "ServiceTimeout", "ImportFailed", "BatchJobFailed", "AuthFailure"]
METRICS: list[tuple[str, float, float]] = [
    ("memory_usage", 0, 100),
    ("cpu_usage", 0, 100),
    ("latency_ms", 0, 5000),
    ("p99_latency_ms", 0, 20000),
    ("error_rate", 0, 1),
    ("queue_depth", 0, 100000),
    ("disk_free_pct", 0, 100),
    ("gc_pause_ms", 0, 2000),
    ("connections", 0, 5000),
    ("open_files", 0, 65536),
    ("threads", 0, 4000),
    ("heap_used_mb", 0, 32000),
    ("cache_hit_ratio", 0, 1),
    ("replication_lag_s", 0, 600),
    ("rps", 0, 50000),
    ("http.status_5xx", 0, 1000),
    ("http.status_4xx", 0, 5000),
    ("db.pool.waiting", 0, 200),
    ("db.pool.active", 0, 200),
    ("db.slow_queries", 0, 500),
    *((f"custom_metric_{i}", 0, 1000) for i in range(20)),
]
SEVERITIES = ["debug", "info", "warning", "error", "critical"]
MESSAGES = [
    "connection refused to db-{n}:5432",
    "timeout after {n}s waiting for upstream",
    "OOMKilled: container exceeded memory limit",
    "too many open files",
    "deadlock detected in transaction {n}",
    "certificate for api-{n}.example.com expires in 3 days",
    "read ECONNRESET",
    "rate limit exceeded for tenant {n}",
]
REGEXES = [r"connection refused", r"^timeout after \d+s", r"OOMKilled", r"deadlock", r"ECONN\w+"]
THRESHOLD_OPS = [Operator.GREATER_THAN, Operator.GTE, Operator.LESS_THAN, Operator.LTE]


def _threshold(rng: random.Random) -> MatchingRule:
    name, low, high = rng.choice(METRICS)
    op = rng.choice(THRESHOLD_OPS)
    # most alerts sit in the upper (or, for less_than, the lower) tail
    fraction = rng.uniform(0.6, 0.99) if op in THRESHOLD_OPS[:2] else rng.uniform(0.01, 0.3)
    value = round(low + (high - low) * fraction, 2)
    return MatchingRule(field=name, operator=op, value=value)


def _action(rng: random.Random) -> list[ActionSpec]:
    kind = rng.choice(["restart", "scale", "cache_clear", "config_update"])
    return [ActionSpec(action_type=kind, target="{service}")]


def make_library(n: int, rng: random.Random) -> list[tuple[str, Pattern]]:
    services = [f"svc-{i}" for i in range(300)]
    out: list[tuple[str, Pattern]] = []
    for i in range(n):
        roll = rng.random()
        rules: list[MatchingRule] = []
        event_types: list[str] = []
        service: str | None = None
        kind = PatternType.PERFORMANCE
        if roll < 0.35:  # one service's metric, in one or two event types
            service = rng.choice(services)
            event_types = rng.sample(METRIC_TYPES, rng.choice([1, 1, 2]))
            rules = [_threshold(rng) for _ in range(rng.choice([1, 1, 2]))]
        elif roll < 0.55:  # error messages of an event type, sometimes one service's
            kind = PatternType.ERROR
            event_types = [rng.choice(ERROR_TYPES)]
            op = rng.choice([Operator.REGEX, Operator.CONTAINS])
            text = rng.choice(REGEXES) if op is Operator.REGEX else rng.choice(MESSAGES)[:12]
            rules = [MatchingRule(field="message", operator=op, value=text)]
            if rng.random() < 0.5:
                service = rng.choice(services)
        elif roll < 0.70:  # any event: a metric threshold at some severities
            rules = [
                _threshold(rng),
                MatchingRule(
                    field="severity",
                    operator=Operator.IN,
                    value=rng.sample(SEVERITIES[2:], rng.choice([1, 2])),
                ),
            ]
        elif roll < 0.80:  # error codes and HTTP statuses
            kind = PatternType.ERROR
            rules = [
                MatchingRule(
                    field="error_code",
                    operator=Operator.IN,
                    value=[f"E{rng.randint(100, 999)}" for _ in range(rng.choice([1, 3]))],
                )
            ]
            if rng.random() < 0.5:
                event_types = [rng.choice(EVENT_TYPES)]
        elif roll < 0.90:  # health events of a region, a flag set or not
            kind = PatternType.BEHAVIORAL
            event_types = [rng.choice(["ServiceUnhealthy", "NodeNotReady", "PodEvicted"])]
            rules = [
                MatchingRule(
                    field="region", operator=Operator.EQUALS, value=f"r{rng.randint(0, 9)}"
                ),
                MatchingRule(
                    field="maintenance", operator=Operator.EXISTS, value=rng.random() < 0.5
                ),
                MatchingRule(field="tier", operator=Operator.NOT_EQUALS, value="batch"),
            ]
        else:  # generic thresholds on any event
            rules = [_threshold(rng)]
        out.append(
            (
                f"p{i}",
                Pattern(
                    pattern_type=kind,
                    description=f"generated pattern {i}",
                    matching_rules=rules,
                    actions=_action(rng),
                    event_types=event_types,
                    service=service,
                    severity=rng.choice(["low", "medium", "high", "critical"]),
                ),
            )
        )
    return out


def _metrics(rng: random.Random) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for name, low, high in rng.sample(METRICS, rng.randint(3, 6)):
        # most readings are normal; one in ten sits in a tail where alerts fire
        fraction = (
            rng.uniform(0.3, 0.6)
            if rng.random() < 0.9
            else rng.choice([rng.uniform(0, 0.3), rng.uniform(0.6, 1)])
        )
        value: Any = round(low + (high - low) * fraction, 2)
        node = payload
        *parents, leaf = name.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return payload


def make_events(n: int, rng: random.Random) -> list[Event]:
    events = []
    for _ in range(n):
        roll = rng.random()
        service = f"svc-{rng.randint(0, 299)}"
        if roll < 0.7:
            event_type = rng.choice(METRIC_TYPES)
            payload = _metrics(rng)
            payload["host"] = f"host-{rng.randint(0, 999)}"
        elif roll < 0.9:
            event_type = rng.choice(ERROR_TYPES)
            payload = {
                "message": rng.choice(MESSAGES).format(n=rng.randint(1, 99)),
                "error_code": f"E{rng.randint(100, 999)}",
                "stack": "\n".join(f"  at frame{i}" for i in range(20)),
            }
        else:
            event_type = rng.choice(EVENT_TYPES)
            payload = {"region": f"r{rng.randint(0, 9)}", "tier": rng.choice(["web", "batch"])}
            if rng.random() < 0.3:
                payload["maintenance"] = True
        events.append(
            Event(
                event_type=event_type,
                source=service,
                service=service if rng.random() < 0.8 else None,
                severity=rng.choice(SEVERITIES),
                payload=payload,
            )
        )
    return events


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _time_us(fn: Any, events: list[Event]) -> tuple[list[float], list[int]]:
    timings: list[float] = []
    counts: list[int] = []
    clock = time.perf_counter_ns
    for event in events:
        started = clock()
        found = fn(event)
        timings.append((clock() - started) / 1000)
        counts.append(len(found))
    return sorted(timings), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patterns", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--baseline-events", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    library = make_library(args.patterns, rng)
    events = make_events(args.events, rng)

    started = time.perf_counter()
    matcher = PatternMatcher(library)
    compile_s = time.perf_counter() - started

    for event in events[:200]:  # warm up caches and the regex engine
        matcher.match(event)
    indexed, counts = _time_us(matcher.match, events)
    sample = events[: args.baseline_events]
    naive, _ = _time_us(matcher.scan, sample)

    for event in sample:
        ours = sorted(m.id for m in matcher.match(event))
        if ours != sorted(m.id for m in matcher.scan(event)):
            raise SystemExit(f"index and scan disagree on {event.model_dump_json()}")

    p50, p99 = _percentile(indexed, 0.5), _percentile(indexed, 0.99)
    n50, n99 = _percentile(naive, 0.5), _percentile(naive, 0.99)
    print(f"patterns: {len(matcher)} active, compiled in {compile_s * 1000:.0f} ms")
    print(
        f"events: {len(events)} (baseline on the first {len(sample)}); matches per event: "
        f"mean {statistics.fmean(counts):.1f}, max {max(counts)}; "
        f"{sum(1 for c in counts if c) / len(counts):.0%} of events match at least one"
    )
    print(
        f"indexed match:  p50 {p50:8.1f} us   p99 {p99:8.1f} us   "
        f"mean {statistics.fmean(indexed):8.1f} us"
    )
    print(
        f"naive scan:     p50 {n50:8.1f} us   p99 {n99:8.1f} us   "
        f"mean {statistics.fmean(naive):8.1f} us"
    )
    print(f"ratio (naive / indexed): p50 x{n50 / p50:.0f}, p99 x{n99 / p99:.0f}")
    verdict = "met" if p50 < TARGET_P50_US else "NOT met"
    print(f"target p50 < {TARGET_P50_US:.0f} us: {verdict} (the seed claims < 10 ms)")


if __name__ == "__main__":
    main()
