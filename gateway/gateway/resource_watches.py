"""Resource subscriptions of handshake sessions, served by watching the upstream that owns the resource.

A session's `resources/subscribe` (authorized like a read of that resource) opens a watch: a 2026-07-28
`subscriptions/listen` stream to the owning upstream for that one URI, held by a task of its own. Each
`resources/updated` the upstream reports goes to the session as `notifications/resources/updated` (on
its standalone stream). The subscribe request is answered once the upstream has acknowledged the listen
and honored the subscription, so a subscription the gateway could never serve is refused, not accepted.

A watch whose stream drops is re-opened after the retry interval (the upstream sends no replay, so the
session is told the resource may have changed). `resources/unsubscribe`, the end of the session and the
gateway's shutdown close it. A session holds at most `MAX_PER_SESSION` watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from accord.errors import AccordError
from gateway.upstreams import Upstream, UpstreamFailure

logger = logging.getLogger(__name__)

MAX_PER_SESSION = 64
# Tells the session its resource changed (the URI as it subscribed).
Notify = Callable[[], Awaitable[None]]
_Key = tuple[str, str]


class ResourceWatches:
    def __init__(self, retry_interval: float) -> None:
        self._retry_interval = retry_interval
        self._watches: dict[_Key, asyncio.Task[None]] = {}

    def watching(self, session: str) -> set[str]:
        return {uri for owner, uri in self._watches if owner == session}

    async def subscribe(self, session: str, uri: str, upstream: Upstream, notify: Notify) -> None:
        """Watch `uri` for `session` (again subscribing is a no-op); returns once the upstream honors it."""
        key = (session, uri)
        if key in self._watches:
            return
        if len(self.watching(session)) >= MAX_PER_SESSION:
            raise AccordError("policy_denied", f"a session holds at most {MAX_PER_SESSION} subscriptions")
        honored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._watch(upstream, uri, notify, honored), name=f"watch {upstream.name}")
        self._watches[key] = task
        task.add_done_callback(lambda _: self._forget(key, task))
        try:
            await asyncio.shield(honored)
        except BaseException:
            task.cancel()
            raise

    def unsubscribe(self, session: str, uri: str) -> None:
        task = self._watches.pop((session, uri), None)
        if task is not None:
            task.cancel()

    def end_session(self, session: str) -> None:
        for uri in self.watching(session):
            self.unsubscribe(session, uri)

    async def aclose(self) -> None:
        tasks = list(self._watches.values())
        self._watches.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, key: _Key, task: asyncio.Task[None]) -> None:
        if self._watches.get(key) is task:
            del self._watches[key]

    async def _watch(
        self, upstream: Upstream, uri: str, notify: Notify, honored: asyncio.Future[None]
    ) -> None:
        refused = AccordError(
            "upstream_unavailable", f"upstream {upstream.name!r} did not take the subscription"
        )
        while True:
            try:
                await upstream.watch_resource(uri, notify, honored)
            except (UpstreamFailure, AccordError) as exc:
                logger.warning("resource watch lost", extra={"upstream": upstream.name, "reason": exc.reason})
                refused = AccordError(exc.reason, exc.detail)
            except Exception as exc:
                logger.warning(
                    "resource watch lost", extra={"upstream": upstream.name, "error": type(exc).__name__}
                )
            if not honored.done():
                # Never acknowledged: the subscriber is refused rather than left waiting.
                honored.set_exception(refused)
                return
            await asyncio.sleep(self._retry_interval)
            # The upstream replays nothing: updates may have been missed while the stream was down.
            with contextlib.suppress(Exception):
                await notify()
