"""The agents the relay forwards to, as the registry knows them, with a short cache.

A registry answer is reused for a bounded time (`ttl_s`, seconds), so a relayed message costs no registry
round trip on the hot path while a quarantine or removal still takes effect within that time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from accord.errors import AccordError
from accord.registry_client import RegisteredAgent, RegistryClient


class AgentDirectory:
    def __init__(
        self, registry_url: str | None, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._registry = RegistryClient(registry_url) if registry_url else None
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, RegisteredAgent]] = {}

    async def get(self, name: str) -> RegisteredAgent:
        """The agent `name`; `AccordError` `not_found`, or `upstream_unavailable` without a registry."""
        cached = self._cache.get(name)
        now = self._clock()
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        if self._registry is None:
            raise AccordError("upstream_unavailable", "the relay has no registry configured")
        agent = await self._registry.get(name)
        if len(self._cache) > 1024:
            self._cache.clear()  # bounded: names come from callers
        self._cache[name] = (now, agent)
        return agent

    async def aclose(self) -> None:
        if self._registry is not None:
            await self._registry.aclose()
