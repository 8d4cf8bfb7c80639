"""Per-client rate limits: a token bucket per (issuer, client), in memory or shared through Redis.

A bucket holds up to `burst` calls and refills at `per_second`. `acquire` takes one call from the bucket or
says how long until one is available (the `Retry-After` of the 429). With Redis every gateway replica draws
from the same bucket, and the bucket's clock is Redis's, so replicas' clocks cannot disagree about it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

from gateway.policy import RateLimit


class RateLimiter(Protocol):
    async def acquire(self, key: str, limit: RateLimit) -> float:
        """0 when the call may proceed (and is counted); else the seconds until it could."""
        ...


class MemoryRateLimiter:
    """Buckets in this process: right for a single gateway replica."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000) -> None:
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)

    async def acquire(self, key: str, limit: RateLimit) -> float:
        now = self._clock()
        rate, burst = float(limit.per_second), float(limit.burst)
        tokens, updated_at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - updated_at) * rate)
        if tokens >= 1:
            self._store(key, tokens - 1, now)
            return 0.0
        self._store(key, tokens, now)
        return (1 - tokens) / rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_buckets:
            self._buckets.clear()  # a flood of identities: forgetting buckets only ever favours callers
        self._buckets[key] = (tokens, now)


# KEYS[1] bucket; ARGV rate, burst. Returns the wait in seconds as a string ("0" = allowed).
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter:
    """Buckets shared by every replica (one atomic script call per tool call)."""

    def __init__(self, redis: Redis, prefix: str = "accord:gateway:rate:") -> None:
        self._prefix = prefix
        self._script = redis.register_script(_BUCKET_SCRIPT)

    async def acquire(self, key: str, limit: RateLimit) -> float:
        wait = await self._script(keys=[self._prefix + key], args=[float(limit.per_second), limit.burst])
        return float(wait.decode() if isinstance(wait, bytes) else wait)
