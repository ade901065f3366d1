"""The recent warning and error lines, kept in memory for GET /admin/logs (log_analysis)."""

from __future__ import annotations

import logging
import re
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class ErrorLog(logging.Handler):
    def __init__(self, capacity: int = 500) -> None:
        super().__init__(level=logging.WARNING)
        self._lines: deque[str] = deque(maxlen=capacity)
        # by the message with its numbers masked: one row per kind of problem
        self._kinds: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            line = f"{stamp} {record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                # the exception's one-line form; full tracebacks go to the process log
                error = record.exc_info[1]
                line += f" ({type(error).__name__}: {error})"
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        self._kinds[_NUMBER.sub("N", record.getMessage())] += 1

    def report(self, limit: int) -> dict[str, Any]:
        lines = list(self._lines)[-limit:] if limit > 0 else []
        return {
            "lines": lines,
            "total": sum(self._kinds.values()),
            "kinds": [{"message": kind, "count": n} for kind, n in self._kinds.most_common(10)],
        }
