"""Resource subscriptions of handshake sessions, served by watching the upstream that owns the resource.

A session's `resources/subscribe` (authorized like a read of that resource) opens a watch: a 2026-07-28
`subscriptions/listen` stream to the owning upstream for that one URI, held by a task of its own. Each
`resources/updated` the upstream reports goes to the session as `notifications/resources/updated` (on
its standalone stream). The subscribe request is answered once the upstream has acknowledged the listen
and honored the subscription, so a subscription the gateway could never serve is refused, not accepted.

A watch whose stream drops is re-opened after the retry interval, backing off to `MAX_BACKOFF_S` while it
keeps failing; once it is open again the session is told the resource may have changed (the upstream
replays nothing). `resources/unsubscribe`, the end of the session and the
gateway's shutdown close it. A session holds at most `MAX_PER_SESSION` watches.

A watch serves its session only as long as the session's authorization holds: the caller of the session's
latest request (`refresh`), or of the subscribe itself, is kept with its watches, for the federation to
check before each update it passes on (`gateway.federation`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import Context

from accord.errors import AccordError
from gateway.caller import Caller
from gateway.upstreams import Upstream, UpstreamFailure

logger = logging.getLogger(__name__)

MAX_PER_SESSION = 64
MAX_BACKOFF_S = 60.0
# Tells the session its resource changed (the URI as it subscribed).
Notify = Callable[[], Awaitable[None]]


class ResourceWatches:
    def __init__(self, retry_interval: float) -> None:
        self._retry_interval = retry_interval
        # Per session, per URI: the watch's task and whether the upstream has taken it.
        self._sessions: dict[str, dict[str, tuple[asyncio.Task[None], asyncio.Future[None]]]] = {}
        # The caller each watching session was last seen as.
        self._callers: dict[str, Caller] = {}

    def watching(self, session: str) -> set[str]:
        return set(self._sessions.get(session, {}))

    def refresh(self, session: str, caller: Caller) -> None:
        """`session` made a request as `caller` (its owner, with a token verified just now)."""
        if session in self._sessions:
            self._callers[session] = caller

    def caller(self, session: str) -> Caller | None:
        """Who the session's watches serve: the caller of its latest request."""
        return self._callers.get(session)

    async def subscribe(
        self, session: str, uri: str, upstream: Upstream, notify: Notify, caller: Caller
    ) -> None:
        """Watch `uri` for `session`; returns once the upstream honors it (subscribing again waits for
        the same watch)."""
        watches = self._sessions.setdefault(session, {})
        self._callers[session] = caller
        if uri in watches:
            await asyncio.shield(watches[uri][1])
            return
        if len(watches) >= MAX_PER_SESSION:
            raise AccordError("policy_denied", f"a session holds at most {MAX_PER_SESSION} subscriptions")
        honored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Not in the subscribing request's context: the watch outlives it, and its spans are its own.
        task = asyncio.create_task(
            self._watch(upstream, uri, notify, honored), name=f"watch {upstream.name}", context=Context()
        )
        watches[uri] = (task, honored)
        task.add_done_callback(lambda _: self._ended(session, uri, task, honored))
        try:
            await asyncio.shield(honored)
        except BaseException:
            task.cancel()
            raise

    def unsubscribe(self, session: str, uri: str) -> None:
        watch = self._sessions.get(session, {}).pop(uri, None)
        if watch is not None:
            watch[0].cancel()

    def end_session(self, session: str) -> None:
        self._callers.pop(session, None)
        for task, _ in self._sessions.pop(session, {}).values():
            task.cancel()

    async def aclose(self) -> None:
        tasks = [task for watches in self._sessions.values() for task, _ in watches.values()]
        self._sessions.clear()
        self._callers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, session: str, uri: str, task: asyncio.Task[None], honored: asyncio.Future[None]) -> None:
        if not honored.done():
            # Ended (unsubscribed, session gone) before the upstream took it: nobody is left waiting.
            honored.set_exception(AccordError("upstream_unavailable", "the subscription ended early"))
            honored.exception()  # retrieved: whoever subscribed may have gone
        watches = self._sessions.get(session, {})
        if uri in watches and watches[uri][0] is task:
            del watches[uri]
        if not watches:
            self._sessions.pop(session, None)
            self._callers.pop(session, None)

    async def _watch(
        self, upstream: Upstream, uri: str, notify: Notify, honored: asyncio.Future[None]
    ) -> None:
        refused = AccordError(
            "upstream_unavailable", f"upstream {upstream.name!r} did not take the subscription"
        )
        acknowledged, delay = honored, self._retry_interval
        while True:
            try:
                await upstream.watch_resource(uri, notify, acknowledged)
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
            if acknowledged.done() and acknowledged.exception() is None:
                delay = self._retry_interval  # it was up: start backing off afresh
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
            acknowledged = asyncio.get_running_loop().create_future()
            # The upstream replays nothing: once it watches again, updates may have been missed.
            acknowledged.add_done_callback(lambda done: _notify_if_acknowledged(done, notify))


def _notify_if_acknowledged(acknowledged: asyncio.Future[None], notify: Notify) -> None:
    if not acknowledged.cancelled() and acknowledged.exception() is None:
        task = asyncio.ensure_future(notify())
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
