"""A semaphore whose size changes at run time: the import workers and the database pool.

Resizing is what scale and config_update really do to the service, so it is exact: growing
wakes waiters at once, shrinking lets holders finish and admits nobody until fewer than the
new size hold a slot; size 0 admits nobody at all.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress


class Slots:
    def __init__(self, size: int) -> None:
        self._size = size
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return self._size

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def resize(self, size: int) -> None:
        self._size = size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use < self._size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)

    async def acquire(self, timeout: float | None = None) -> None:
        """Take a slot; TimeoutError when none frees up within timeout seconds."""
        if self._in_use < self._size and not self._waiters:
            self._in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # handed a slot just as we gave up: pass it on
                self.release()
            else:
                with suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._in_use -= 1
        self._wake()

    @asynccontextmanager
    async def hold(self, timeout: float | None = None) -> AsyncIterator[None]:
        await self.acquire(timeout)
        try:
            yield
        finally:
            self.release()
