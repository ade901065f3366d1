"""cancel_and_wait ends a task whose first cancel was lost (cpython#86296 on 3.11, met
inside redis-py's send), where cancel-then-await would wait for as long as it runs."""

from __future__ import annotations

import asyncio
import time

from aiops.events.cancel import cancel_and_wait


async def _loses_one_cancel(cancels: list[float]) -> None:
    """Runs on past the first cancel, as a read does whose cancel wait_for dropped."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancels.append(time.monotonic())
            if len(cancels) > 1:
                raise


async def test_a_task_that_lost_its_cancel_is_cancelled_again_until_it_ends() -> None:
    cancels: list[float] = []
    task = asyncio.create_task(_loses_one_cancel(cancels))
    await asyncio.sleep(0)
    # the usual cancel-then-await waits on: bounded here to show it
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done and len(cancels) == 1
    async with asyncio.timeout(10):  # a hang fails here
        await cancel_and_wait(task, again_s=0.05)
    assert task.cancelled() and len(cancels) == 2


async def test_what_the_task_ended_with_is_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(failed)  # already done with an error: nothing raised
    done = asyncio.create_task(asyncio.sleep(0, result=7))
    await cancel_and_wait(done)
    assert done.cancelled() or done.result() == 7
