"""Each run's budget of tool calls, enforced where the calls happen.

A token exchanged from a task grant carries its run (`wf`) and the run's limit (`tool_call_limit`, which
the orchestrator sent and the relay wrote into the grant). Every tool call of the run that the policy
allows takes one unit first; once the run has used its limit, its further calls are refused
(`budget_exceeded`) and never reach an upstream, however fast an agent calls between two checks of the
orchestrator. Counts are per process, or shared through Redis by every gateway replica when configured;
they outlive the longest grant, after which no token of the run can call anything anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

# Longer than any grant lives (`gateway_relay_max_deadline_seconds` caps it at an hour).
COUNT_TTL_S = 2 * 3600


class RunToolCalls(Protocol):
    async def take(self, run: str) -> int:
        """Count one more tool call of `run`; the run's count including it."""
        ...


class MemoryRunToolCalls:
    """Counts in this process: right for a single gateway replica."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_runs: int = 100_000) -> None:
        self._clock = clock
        self._max_runs = max_runs
        self._counts: dict[str, tuple[int, float]] = {}  # run -> (count, first call)

    async def take(self, run: str) -> int:
        now = self._clock()
        count, since = self._counts.get(run, (0, now))
        if now - since > COUNT_TTL_S:
            count, since = 0, now
        if run not in self._counts and len(self._counts) >= self._max_runs:
            self._forget_old(now)
        self._counts[run] = (count + 1, since)
        return count + 1

    def _forget_old(self, now: float) -> None:
        self._counts = {r: c for r, c in self._counts.items() if now - c[1] <= COUNT_TTL_S}


class RedisRunToolCalls:
    """Counts shared by every replica (one INCR per tool call, the expiry set by the first)."""

    def __init__(self, redis: Redis, prefix: str = "accord:gateway:run-tool-calls:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def take(self, run: str) -> int:
        key = self._prefix + run
        async with self._redis.pipeline(transaction=True) as pipeline:
            pipeline.incr(key)
            pipeline.expire(key, COUNT_TTL_S, nx=True)
            count, _ = await pipeline.execute()
        return int(count)
