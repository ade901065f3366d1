"""A sliding-window rate limit per identity, counted in Redis so every API replica shares
it: one sorted set per (route, subject) holding the times of the requests let through."""

from __future__ import annotations

import logging
import math
import time
import uuid

import redis.asyncio as aioredis
from fastapi import HTTPException
from redis.exceptions import RedisError

log = logging.getLogger("aiops.api")


class RateLimit:
    def __init__(self, redis: aioredis.Redis, route: str, per_window: int, window_s: float = 60):
        self._redis = redis
        self._route = route
        self.per_window = per_window
        self.window_s = window_s

    async def check(self, subject: str) -> None:
        """Count one request of `subject`; HTTPException 429 with Retry-After when over."""
        if self.per_window <= 0:
            return
        key = f"aiops:ratelimit:{self._route}:{subject}"
        now = time.time()
        member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", now - self.window_s)
                pipe.zadd(key, {member: now})
                pipe.zcard(key)
                pipe.zrange(key, 0, 0, withscores=True)
                pipe.expire(key, math.ceil(self.window_s) + 1)
                _, _, count, oldest, _ = await pipe.execute()
            if count <= self.per_window:
                return
            # a refused request does not count: a client that waits Retry-After gets in
            await self._redis.zrem(key, member)
        except RedisError as error:
            # the limit protects the embedder, it is not a reason to refuse every search
            log.warning("rate limit of %s not checked (Redis: %s)", self._route, error)
            return
        first = float(oldest[0][1]) if oldest else now
        retry = max(1, math.ceil(first + self.window_s - now))
        raise HTTPException(
            429,
            f"{subject} made more than {self.per_window} {self._route} requests in "
            f"{self.window_s:g} s; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )
