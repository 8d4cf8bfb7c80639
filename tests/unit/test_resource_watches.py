"""Resource watches: answered once the upstream honors them, refused when it does not, bounded per
session, and closed with the session (the upstream here is a stand-in for `Upstream.watch_resource`; the
real path runs against the fixture server in `test_gateway_mcp_server_features`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from accord.errors import AccordError
from accord.tokens import AccessClaims
from gateway.caller import Caller
from gateway.policy import Subject
from gateway.resource_watches import MAX_PER_SESSION, ResourceWatches, SubscriptionAuthority, WatchDenied
from gateway.upstreams import Upstream, UpstreamFailure


class StandInUpstream:
    name = "stand-in"

    def __init__(self, honors: bool = True) -> None:
        self.honors = honors
        self.open: set[str] = set()

    async def watch_resource(
        self, uri: str, on_update: Callable[[], Awaitable[None]], honored: asyncio.Future[None]
    ) -> None:
        if not self.honors:
            raise UpstreamFailure("upstream_unavailable", "offers no updates of that resource")
        honored.set_result(None)
        self.open.add(uri)
        try:
            await on_update()
            await asyncio.Event().wait()
        finally:
            self.open.discard(uri)


def upstream(stand_in: StandInUpstream) -> Upstream:
    return cast(Upstream, stand_in)


SCOPE = "resources:fixture"


def caller(client_id: str, iat: int = 0, exp: int = 2**31) -> Caller:
    claims = AccessClaims(
        iss="https://gateway.test",
        sub=client_id,
        aud=("https://gateway.test/mcp",),
        client_id=client_id,
        scopes=frozenset({SCOPE}),
        iat=iat,
        exp=exp,
        jti=f"{client_id}-{iat}",
    )
    return Caller(claims, Subject(client_id))


CALLER = caller("watcher")


async def allow_all(_caller: Caller, _scope: str) -> AccordError | None:
    return None


def new_watches(
    authority: SubscriptionAuthority = allow_all, denied: list[WatchDenied] | None = None
) -> ResourceWatches:
    async def record(ended: WatchDenied) -> None:
        if denied is not None:
            denied.append(ended)

    return ResourceWatches(0.01, authority, record)


async def test_a_watch_answers_once_honored_and_closes_with_its_session() -> None:
    watches, stand_in, heard = new_watches(), StandInUpstream(), []

    async def notify() -> None:
        heard.append(1)

    await watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, CALLER)
    await watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, CALLER)  # again: one watch
    await watches.subscribe("s2", "test://a", upstream(stand_in), SCOPE, notify, CALLER)
    await asyncio.sleep(0)
    assert watches.watching("s1") == {"test://a"} and heard == [1, 1]  # noqa: PT018
    watches.end_session("s1")
    await asyncio.sleep(0.01)
    assert watches.watching("s1") == set() and watches.watching("s2") == {"test://a"}  # noqa: PT018
    await watches.aclose()
    assert stand_in.open == set()


async def test_a_watch_the_upstream_does_not_honor_is_refused_and_not_kept() -> None:
    watches = new_watches()

    async def notify() -> None:
        raise AssertionError("never notified")

    with pytest.raises(AccordError) as refused:
        await watches.subscribe(
            "s1", "test://a", upstream(StandInUpstream(honors=False)), SCOPE, notify, CALLER
        )
    assert refused.value.reason == "upstream_unavailable"
    await asyncio.sleep(0)
    assert watches.watching("s1") == set()


async def test_a_session_holds_a_bounded_number_of_watches() -> None:
    watches, stand_in = new_watches(), StandInUpstream()

    async def notify(*_: Any) -> None:
        return None

    for n in range(MAX_PER_SESSION):
        await watches.subscribe("s1", f"test://{n}", upstream(stand_in), SCOPE, notify, CALLER)
    with pytest.raises(AccordError) as refused:
        await watches.subscribe("s1", "test://one-more", upstream(stand_in), SCOPE, notify, CALLER)
    assert refused.value.reason == "policy_denied"
    await watches.aclose()


async def test_subscribing_again_waits_for_the_same_watch_to_be_taken() -> None:
    watches, stand_in = new_watches(), StandInUpstream(honors=False)

    async def notify() -> None:
        return None

    first = asyncio.create_task(
        watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, CALLER)
    )
    second = asyncio.create_task(
        watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, CALLER)
    )
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(outcome, AccordError) for outcome in outcomes)


async def test_the_session_is_served_as_the_caller_of_its_latest_request_while_it_watches() -> None:
    watches, stand_in = new_watches(), StandInUpstream()

    async def notify() -> None:
        return None

    watches.refresh("s1", caller("early"))  # no watch yet: nothing is kept
    assert watches.caller("s1") is None
    first = caller("watcher", iat=10)
    await watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, first)
    assert watches.caller("s1") is first
    renewed = caller("watcher", iat=20)
    watches.refresh("s1", renewed)
    watches.refresh("s1", caller("watcher", iat=15))  # an older token, overtaken: it does not win
    assert watches.caller("s1") is renewed
    watches.unsubscribe("s1", "test://a")
    await asyncio.sleep(0.01)
    assert watches.caller("s1") is None  # its last watch is gone, and so is what it was served as
    await watches.aclose()


class Revocable:
    """An authority that allows until told otherwise (or raises, for a broken one)."""

    def __init__(self) -> None:
        self.refusal: AccordError | None = None
        self.broken = False
        self.asked = 0

    async def __call__(self, _caller: Caller, scope: str) -> AccordError | None:
        assert scope == SCOPE
        self.asked += 1
        if self.broken:
            raise RuntimeError("the grant store is down")
        return self.refusal


class Updating(StandInUpstream):
    """An upstream that reports an update whenever `update()` is called; it can drop its stream."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: asyncio.Queue[bool] = asyncio.Queue()
        self.opened = 0

    async def watch_resource(
        self, uri: str, on_update: Callable[[], Awaitable[None]], honored: asyncio.Future[None]
    ) -> None:
        self.opened += 1
        if not honored.done():
            honored.set_result(None)
        while await self.updates.get():
            await on_update()
        raise UpstreamFailure("upstream_unavailable", "the stream dropped")


async def test_an_update_reaches_the_session_only_while_the_authority_allows_then_the_watch_ends() -> None:
    authority, denied, heard, stand_in = Revocable(), [], [], Updating()
    watches = new_watches(authority, denied)

    async def notify() -> None:
        heard.append(1)

    await watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, CALLER, "trace-1")
    stand_in.updates.put_nowait(True)
    await asyncio.sleep(0.02)
    assert heard == [1]
    authority.refusal = AccordError("invalid_token", "revoked")
    stand_in.updates.put_nowait(True)
    await asyncio.sleep(0.02)
    assert heard == [1]  # refused: not passed on
    assert watches.watching("s1") == set()
    assert [(d.session, d.uri, d.caller, d.trace_id, d.error.reason) for d in denied] == [
        ("s1", "test://a", CALLER, "trace-1", "invalid_token")
    ]
    await watches.aclose()


async def test_a_watch_ends_when_the_sessions_token_expires_without_any_update() -> None:
    denied: list[WatchDenied] = []

    async def until_expired(caller: Caller, _scope: str) -> AccordError | None:
        return AccordError("invalid_token", "expired") if caller.claims.exp <= time.time() else None

    watches, stand_in = new_watches(until_expired, denied), Updating()

    async def notify() -> None:
        return None

    short = caller("watcher", iat=1, exp=int(time.time()) + 1)
    await watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, short)
    assert watches.watching("s1") == {"test://a"}
    await asyncio.sleep(short.claims.exp - time.time() + 0.3)
    assert watches.watching("s1") == set()
    assert [d.error.reason for d in denied] == ["invalid_token"]
    await watches.aclose()


async def test_a_dropped_watch_is_not_reopened_for_a_session_no_longer_allowed() -> None:
    authority, denied, stand_in = Revocable(), [], Updating()
    watches = new_watches(authority, denied)

    async def notify() -> None:
        return None

    await watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, CALLER)
    authority.refusal = AccordError("policy_denied", "withdrawn")
    stand_in.updates.put_nowait(False)  # the stream drops
    await asyncio.sleep(0.1)
    assert stand_in.opened == 1
    assert [d.error.reason for d in denied] == ["policy_denied"]
    await watches.aclose()


async def test_an_authority_that_fails_ends_the_watch_as_an_internal_error() -> None:
    authority, denied, heard, stand_in = Revocable(), [], [], Updating()
    watches = new_watches(authority, denied)

    async def notify() -> None:
        heard.append(1)

    await watches.subscribe("s1", "test://a", upstream(stand_in), SCOPE, notify, CALLER)
    authority.broken = True
    stand_in.updates.put_nowait(True)
    await asyncio.sleep(0.05)
    assert heard == [] and watches.watching("s1") == set()  # noqa: PT018
    assert [d.error.reason for d in denied] == ["internal_error"]
    await watches.aclose()


async def test_a_stale_refusal_does_not_end_the_watch_that_replaced_it() -> None:
    gate, denied, calls = asyncio.Event(), [], []

    async def first_refused_late(_caller: Caller, _scope: str) -> AccordError | None:
        calls.append(1)
        if len(calls) == 1:
            await gate.wait()
            return AccordError("invalid_token", "expired")
        return None

    watches = new_watches(first_refused_late, denied)

    async def notify() -> None:
        return None

    expiring = caller("watcher", iat=1, exp=int(time.time()))
    await watches.subscribe("s1", "test://a", upstream(Updating()), SCOPE, notify, expiring)
    await asyncio.sleep(0.1)  # the expiry check (a task of its own) is under way
    assert calls == [1]
    watches.unsubscribe("s1", "test://a")
    await watches.subscribe("s1", "test://a", upstream(Updating()), SCOPE, notify, caller("watcher", iat=2))
    gate.set()
    await asyncio.sleep(0.02)
    assert watches.watching("s1") == {"test://a"}
    assert denied == []
    await watches.aclose()
