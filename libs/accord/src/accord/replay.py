"""Single-use identifiers (message and assertion `jti`s), remembered until they expire.

With Redis the memory is shared, so an identifier used at one replica is refused at all of them;
otherwise it is per process.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Protocol

from redis.asyncio import Redis


class ReplayGuard(Protocol):
    async def first_use(self, key: str, expires_at: float) -> bool:
        """True the first time `key` is seen before `expires_at`; False for every later use."""
        ...


class MemoryReplayGuard:
    """Expiry is kept in a heap, so each check costs O(log n) rather than a sweep of every key."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []

    async def first_use(self, key: str, expires_at: float) -> bool:
        now = time.time()
        while self._expiry and self._expiry[0][0] <= now:
            _, old = heapq.heappop(self._expiry)
            if self._seen.get(old, now + 1) <= now:
                del self._seen[old]
        if key in self._seen:
            return False
        until = max(expires_at, now + 1)
        self._seen[key] = until
        heapq.heappush(self._expiry, (until, key))
        return True


class RedisReplayGuard:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def first_use(self, key: str, expires_at: float) -> bool:
        # SET NX is atomic across replicas: exactly one caller wins the key.
        ttl_ms = max(1000, math.ceil((expires_at - time.time()) * 1000))
        return bool(await self._redis.set(self._prefix + key, "1", nx=True, px=ttl_ms))


def replay_guard(redis_url: str | None, prefix: str) -> ReplayGuard:
    """Redis-backed when configured (shared by replicas), in memory otherwise."""
    if redis_url:
        return RedisReplayGuard(Redis.from_url(redis_url), prefix)
    return MemoryReplayGuard()
