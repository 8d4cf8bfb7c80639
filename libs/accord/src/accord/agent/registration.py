"""Self-registration with the registry: in the background, with backoff, and readiness once it worked.

It cannot happen before startup completes: the registry fetches the card from this agent's own HTTP
server, which only answers once the lifespan has started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from accord.registry_client import RegisteredAgent, RegistryClient

logger = logging.getLogger(__name__)

Register = Callable[[str], Awaitable[object]]


async def register_with_registry(registry_url: str, card_url: str) -> RegisteredAgent:
    """Register once through the shared registry client."""
    async with RegistryClient(registry_url) as client:
        return await client.register(card_url)


class Registration:
    """Tracks whether this agent is registered; `ready` is its readiness check."""

    def __init__(
        self,
        card_url: str,
        register: Register,
        timeout_s: float = 30.0,
        first_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
    ) -> None:
        self.card_url = card_url
        self._register = register
        self._timeout_s = timeout_s
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._done = asyncio.Event()
        self.attempts = 0

    @property
    def registered(self) -> bool:
        return self._done.is_set()

    async def ready(self) -> bool:
        return self.registered

    async def wait(self) -> None:
        """Until registered (callers bound the wait)."""
        await self._done.wait()

    async def run(self) -> bool:
        """Try until registered or out of time; True when registered."""
        deadline = time.monotonic() + self._timeout_s
        delay = self._first_delay_s
        while True:
            self.attempts += 1
            try:
                await self._register(self.card_url)
            except Exception as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.error(
                        "registration gave up",
                        extra={"attempts": self.attempts, "error_type": type(exc).__name__},
                    )
                    return False
                retry = {"attempt": self.attempts, "error_type": type(exc).__name__}
                logger.info("registration retry", extra=retry)
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, self._max_delay_s)
                continue
            self._done.set()
            logger.info("registered", extra={"card_url": self.card_url, "attempts": self.attempts})
            return True
