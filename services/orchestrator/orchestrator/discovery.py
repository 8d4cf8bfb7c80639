"""Discovery as the orchestrator does it: the registry's answer for a skill is reused for a moment.

A fan-out of hundreds of steps would otherwise ask the registry once per step, every run. Answers are
kept for `ttl_s` (2 s by default, as long as the gateway relay keeps its own), so a card that stops
offering a skill, or an agent quarantined, is no longer used after at most that long; concurrent lookups
of one skill share a single request. Failed lookups and empty answers are not kept.
"""

from __future__ import annotations

import asyncio
import time

from accord.registry_client import RegisteredAgent, RegistryClient

DEFAULT_TTL_S = 2.0


class CachingRegistryClient(RegistryClient):
    """A `RegistryClient` whose `discover` answers from a short-lived cache."""

    def __init__(self, base_url: str, ttl_s: float = DEFAULT_TTL_S, timeout: float = 5.0) -> None:
        super().__init__(base_url, timeout=timeout)
        self._ttl_s = ttl_s
        self._answers: dict[tuple[str | None, str | None], tuple[float, list[RegisteredAgent]]] = {}
        self._pending: dict[tuple[str | None, str | None], asyncio.Task[list[RegisteredAgent]]] = {}

    async def discover(self, skill: str | None = None, tag: str | None = None) -> list[RegisteredAgent]:
        key = (skill, tag)
        kept = self._answers.get(key)
        if kept is not None and time.monotonic() - kept[0] < self._ttl_s:
            return list(kept[1])
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.create_task(self._lookup(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _task: self._pending.pop(key, None))
        return list(await asyncio.shield(pending))

    async def _lookup(self, key: tuple[str | None, str | None]) -> list[RegisteredAgent]:
        asked = time.monotonic()
        agents = await super().discover(*key)
        if agents:
            # An empty answer is not kept: an agent registering now is found on the next lookup.
            self._answers[key] = (asked, agents)
        return agents

    def forget(self) -> None:
        """Drop every kept answer (the next lookups ask the registry)."""
        self._answers.clear()
