"""`aiops worker`."""

from __future__ import annotations

import asyncio

from aiops.config import get_settings
from aiops.logging_setup import configure_logging


def worker() -> None:
    """Run the Temporal worker: incident and healing workflows with their activities.

    Polls AIOPS_TASK_QUEUE (default aiops). SIGTERM or Ctrl-C stops polling and lets the
    activities in hand finish (up to 30 s). Concurrency: AIOPS_WORKER_MAX_ACTIVITIES and
    AIOPS_WORKER_MAX_WORKFLOW_TASKS. Prometheus metrics on AIOPS_METRICS_BIND when set.
    """
    from workers.worker import run

    settings = get_settings()
    configure_logging(settings)
    asyncio.run(run(settings))
