"""Retry with capped exponential backoff while a server is away; nothing is dropped."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import asyncpg
import redis.exceptions

T = TypeVar("T")

log = logging.getLogger(__name__)

# A server restarting or unreachable: worth waiting for. Anything else is a bug or bad data
# and must surface rather than spin.
TRANSIENT: Final[tuple[type[BaseException], ...]] = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, TimeoutError
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # the connection was closed under us
    # asyncpg's protocol state after a connection died mid-query (seen on a server restart)
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


class Backoff:
    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        # full jitter: several listeners coming back at once do not hammer in step
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


async def retrying(
    operation: Callable[[], Awaitable[T]],
    what: str,
    *,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
    is_transient: Callable[[BaseException], bool] | None = None,
    backoff: Backoff | None = None,
) -> T:
    """Run operation until it succeeds; wait and retry on transient errors, log each."""
    backoff = backoff or Backoff()
    while True:
        try:
            result = await operation()
        except transient as error:
            transient_error: BaseException = error
        except Exception as error:
            if is_transient is None or not is_transient(error):
                raise
            transient_error = error
        else:
            if backoff.attempt:
                log.info("%s: succeeded after %d retries", what, backoff.attempt)
            return result
        delay = backoff.next_delay()
        log.warning(
            "%s failed (%s: %s); retrying in %.2fs",
            what,
            type(transient_error).__name__,
            transient_error,
            delay,
        )
        await asyncio.sleep(delay)
