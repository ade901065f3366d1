"""Request figures over a sliding window, and the process's own memory."""

from __future__ import annotations

import math
import time
from collections import deque

import psutil
from pydantic import BaseModel

MB = 1024 * 1024


class RequestFigures(BaseModel):
    requests: int
    latency_ms: float
    error_rate: float


class RequestStats:
    """Latency p95 and error rate of the API requests of the last window_s seconds."""

    def __init__(self, window_s: float = 60.0, capacity: int = 20_000) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float, bool]] = deque(maxlen=capacity)
        self.total = 0
        self.failed = 0

    def record(self, latency_ms: float, failed: bool) -> None:
        self._samples.append((time.monotonic(), latency_ms, failed))
        self.total += 1
        self.failed += int(failed)

    def figures(self) -> RequestFigures:
        since = time.monotonic() - self.window_s
        while self._samples and self._samples[0][0] < since:
            self._samples.popleft()
        if not self._samples:
            return RequestFigures(requests=0, latency_ms=0.0, error_rate=0.0)
        latencies = sorted(sample[1] for sample in self._samples)
        p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)]
        errors = sum(1 for sample in self._samples if sample[2])
        return RequestFigures(
            requests=len(latencies),
            latency_ms=round(p95, 2),
            error_rate=round(errors / len(latencies), 4),
        )


_PROCESS = psutil.Process()


def rss_bytes() -> int:
    return int(_PROCESS.memory_info().rss)
