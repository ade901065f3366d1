"""Cancelling a task and waiting for it to end, when the cancel may be lost.

On Python 3.11, `asyncio.wait_for` drops a cancel that arrives in the loop turn in which
the call it wraps completes (python/cpython#86296, fixed in 3.12). redis-py sends every
command under `wait_for` (its socket timeout), so a task cancelled while it talks to Redis
sometimes carries on, and `task.cancel(); await task` then waits for as long as it runs:
for ever, for a reader. The coalescing fault tests met exactly that (about one cancel in
twenty lost). Cancelling again until the task ends is the remedy; a second cancel lands
on another await.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

AGAIN_S = 0.1


async def cancel_and_wait(task: asyncio.Future[Any], again_s: float = AGAIN_S) -> None:
    """Cancel `task` and wait until it has ended, cancelling again every `again_s` while it
    runs on. What it ended with (a result, a cancel, an error) is not raised."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=again_s)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
