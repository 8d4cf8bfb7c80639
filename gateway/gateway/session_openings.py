"""One session opening at a time per client, from the cap check until the session exists.

The guard counts a client's open sessions before letting an `initialize` through, but the session manager
registers the session only later, after awaits of its own. Checked side by side, a burst of openings would
all see the same count and all pass. So each client's openings queue: an opening holds its client's turn
from the check until its response starts (by then the manager has registered the session, or refused
it), and the next opening of that client counts it. Other clients are never held up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from starlette.types import Message, Send


class Turn:
    """A client's turn to open a session; `release` is idempotent."""

    def __init__(self, openings: SessionOpenings, key: Hashable) -> None:
        self._openings = openings
        self._key = key
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._openings.release(self._key)

    def releasing(self, send: Send) -> Send:
        """`send`, which gives the turn up as the response starts."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.release()
            await send(message)

        return sending


class SessionOpenings:
    def __init__(self, wait_s: float = 10.0) -> None:
        self._wait_s = wait_s
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._users: dict[Hashable, int] = {}

    async def turn(self, key: Hashable) -> Turn | None:
        """Wait for `key`'s turn; None if it did not come within the wait (an opening of that client is
        stuck), so nothing waits without bound."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with asyncio.timeout(self._wait_s):
                await lock.acquire()
        except TimeoutError:
            self._forget(key)
            return None
        except BaseException:
            self._forget(key)
            raise
        return Turn(self, key)

    def waiting(self) -> int:
        """How many openings hold or wait for a turn (for tests: 0 once all are through)."""
        return sum(self._users.values())

    def release(self, key: Hashable) -> None:
        self._locks[key].release()
        self._forget(key)

    def _forget(self, key: Hashable) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:
            del self._users[key]
            del self._locks[key]
