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

A watch lives only as long as the session's authorization does. The session is served as the caller of
its latest request (`refresh`; a token issued earlier than the one kept never replaces it), and that
caller is put to the `SubscriptionAuthority` (its token's expiry, its task grant, its scope, the live
policy) before each update is passed on, before each re-open, and when the token expires. Refused, the
watch ends at once, and the refusal is reported (`WatchDenied`) for the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import Context
from dataclasses import dataclass, field
from typing import Any

from accord.errors import AccordError
from gateway.caller import Caller
from gateway.upstreams import Upstream, UpstreamFailure

logger = logging.getLogger(__name__)

MAX_PER_SESSION = 64
MAX_BACKOFF_S = 60.0
_EXPIRY_MARGIN_S = 0.05
# Tells the session its resource changed (the URI as it subscribed).
Notify = Callable[[], Awaitable[None]]
# Why a subscription may no longer be served to this caller under this scope (None: it may).
SubscriptionAuthority = Callable[[Caller, str], Awaitable[AccordError | None]]


@dataclass(frozen=True)
class WatchDenied:
    """A watch ended because its session's authorization no longer holds."""

    session: str
    uri: str
    upstream: str
    caller: Caller | None
    trace_id: str  # of the subscribe that opened the watch
    error: AccordError


@dataclass(eq=False)
class _Watch:
    session: str
    uri: str
    upstream: Upstream
    scope: str
    trace_id: str
    notify: Notify
    honored: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task[None] | None = None


class ResourceWatches:
    def __init__(
        self,
        retry_interval: float,
        authority: SubscriptionAuthority,
        on_denied: Callable[[WatchDenied], Awaitable[None]],
    ) -> None:
        self._retry_interval = retry_interval
        self._authority = authority
        self._on_denied = on_denied
        self._sessions: dict[str, dict[str, _Watch]] = {}
        # The caller each watching session was last seen as, and when its token's expiry is checked.
        self._callers: dict[str, Caller] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._checks: set[asyncio.Task[bool]] = set()

    def watching(self, session: str) -> set[str]:
        return set(self._sessions.get(session, {}))

    def refresh(self, session: str, caller: Caller) -> None:
        """`session` made a request as `caller` (its owner, with a token verified just now)."""
        if session in self._sessions:
            self._serve_as(session, caller)

    def caller(self, session: str) -> Caller | None:
        """Who the session's watches serve: the caller of its latest request."""
        return self._callers.get(session)

    async def subscribe(
        self,
        session: str,
        uri: str,
        upstream: Upstream,
        scope: str,
        notify: Notify,
        caller: Caller,
        trace_id: str = "",
    ) -> None:
        """Watch `uri` (read under `scope`) for `session`; returns once the upstream honors it
        (subscribing again waits for the same watch)."""
        watches = self._sessions.setdefault(session, {})
        self._serve_as(session, caller)
        if uri in watches:
            await asyncio.shield(watches[uri].honored)
            return
        if len(watches) >= MAX_PER_SESSION:
            raise AccordError("policy_denied", f"a session holds at most {MAX_PER_SESSION} subscriptions")
        watch = _Watch(session, uri, upstream, scope, trace_id, notify)
        # Not in the subscribing request's context: the watch outlives it, and its spans are its own.
        watch.task = asyncio.create_task(self._watch(watch), name=f"watch {upstream.name}", context=Context())
        watches[uri] = watch
        watch.task.add_done_callback(lambda _: self._ended(watch))
        try:
            await asyncio.shield(watch.honored)
        except BaseException:
            watch.task.cancel()
            raise

    def unsubscribe(self, session: str, uri: str) -> None:
        watch = self._sessions.get(session, {}).pop(uri, None)
        if watch is not None and watch.task is not None:
            watch.task.cancel()

    def end_session(self, session: str) -> None:
        self._forget_caller(session)
        for watch in self._sessions.pop(session, {}).values():
            if watch.task is not None:
                watch.task.cancel()

    async def aclose(self) -> None:
        tasks: list[asyncio.Task[Any]] = [
            w.task for watches in self._sessions.values() for w in watches.values() if w.task
        ]
        for session in list(self._callers):
            self._forget_caller(session)
        self._sessions.clear()
        tasks += list(self._checks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- the session's authorization ------------------------------------------------------------------

    def _serve_as(self, session: str, caller: Caller) -> None:
        kept = self._callers.get(session)
        if kept is not None and caller.claims.iat < kept.claims.iat:
            return  # requests can overtake one another: the newest token wins
        self._callers[session] = caller
        if (handle := self._expiry.pop(session, None)) is not None:
            handle.cancel()
        # A moment past the expiry, so the check sees the token expired whatever the clocks' drift.
        delay = max(caller.claims.exp - time.time(), 0.0) + _EXPIRY_MARGIN_S
        self._expiry[session] = asyncio.get_running_loop().call_later(delay, self._check_session, session)

    def _check_session(self, session: str) -> None:
        """The session's token expired (unless a newer one arrives): each of its watches is checked."""
        self._expiry.pop(session, None)
        for watch in list(self._sessions.get(session, {}).values()):
            check = asyncio.create_task(self._allowed(watch), context=Context())
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)

    def _forget_caller(self, session: str) -> None:
        self._callers.pop(session, None)
        if (handle := self._expiry.pop(session, None)) is not None:
            handle.cancel()

    def _current(self, watch: _Watch) -> bool:
        return self._sessions.get(watch.session, {}).get(watch.uri) is watch

    async def _allowed(self, watch: _Watch) -> bool:
        """Whether the watch may go on serving its session; if not, it ends here and the refusal is
        reported. A watch already ended is not served, and not reported again."""
        if not self._current(watch):
            return False
        caller = self._callers.get(watch.session)
        refusal: AccordError | None = AccordError("invalid_token", "the subscription has no caller")
        if caller is not None:
            try:
                refusal = await self._authority(caller, watch.scope)
            except Exception:
                logger.exception("subscription authority failed", extra={"upstream": watch.upstream.name})
                refusal = AccordError("internal_error", "the subscription could not be authorized")
        if refusal is None:
            return True
        if not self._current(watch):
            return False  # ended while it was checked: whoever ended it said why
        self.unsubscribe(watch.session, watch.uri)
        denied = WatchDenied(watch.session, watch.uri, watch.upstream.name, caller, watch.trace_id, refusal)
        # Its own task, shielded: the watch's task (which may be this one) is being cancelled.
        report = asyncio.ensure_future(self._report(denied))
        await asyncio.shield(report)
        return False

    async def _report(self, denied: WatchDenied) -> None:
        try:
            await self._on_denied(denied)
        except Exception:
            logger.exception("ending a watch was not recorded", extra={"upstream": denied.upstream})

    # --- the watch itself -----------------------------------------------------------------------------

    def _ended(self, watch: _Watch) -> None:
        if not watch.honored.done():
            # Ended (unsubscribed, session gone) before the upstream took it: nobody is left waiting.
            watch.honored.set_exception(AccordError("upstream_unavailable", "the subscription ended early"))
            watch.honored.exception()  # retrieved: whoever subscribed may have gone
        watches = self._sessions.get(watch.session, {})
        if watches.get(watch.uri) is watch:
            del watches[watch.uri]
        if not watches:
            self._sessions.pop(watch.session, None)
            self._forget_caller(watch.session)

    async def _deliver(self, watch: _Watch) -> None:
        if await self._allowed(watch):
            await watch.notify()

    async def _watch(self, watch: _Watch) -> None:
        upstream, honored = watch.upstream, watch.honored
        refused = AccordError(
            "upstream_unavailable", f"upstream {upstream.name!r} did not take the subscription"
        )
        acknowledged, delay = honored, self._retry_interval
        while True:
            try:
                await upstream.watch_resource(watch.uri, lambda: self._deliver(watch), acknowledged)
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
            if not await self._allowed(watch):
                return  # not re-opened for a session no longer allowed to read it
            acknowledged = asyncio.get_running_loop().create_future()
            # The upstream replays nothing: once it watches again, updates may have been missed.
            acknowledged.add_done_callback(lambda done: self._notify_if_acknowledged(done, watch))

    def _notify_if_acknowledged(self, acknowledged: asyncio.Future[None], watch: _Watch) -> None:
        if not acknowledged.cancelled() and acknowledged.exception() is None:
            task = asyncio.ensure_future(self._deliver(watch))
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
