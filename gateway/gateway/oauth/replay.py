"""Single-use identifiers (client assertion `jti`s), remembered until they expire.

With Redis configured the memory is shared, so an assertion used at one gateway replica is refused at all
of them; otherwise it is per process.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from redis.asyncio import Redis


class ReplayGuard(Protocol):
    async def first_use(self, key: str, expires_at: float) -> bool:
        """True the first time `key` is seen before `expires_at`; False for every later use."""
        ...


class MemoryReplayGuard:
    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    async def first_use(self, key: str, expires_at: float) -> bool:
        now = time.time()
        self._seen = {k: t for k, t in self._seen.items() if t > now}
        if key in self._seen:
            return False
        self._seen[key] = max(expires_at, now + 1)
        return True


class RedisReplayGuard:
    def __init__(self, redis: Redis, prefix: str = "accord:gateway:jti:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def first_use(self, key: str, expires_at: float) -> bool:
        # SET NX is atomic across replicas: exactly one caller wins the key.
        ttl_ms = max(1000, math.ceil((expires_at - time.time()) * 1000))
        return bool(await self._redis.set(self._prefix + key, "1", nx=True, px=ttl_ms))
