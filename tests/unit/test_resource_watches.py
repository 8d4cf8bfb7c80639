"""Resource watches: answered once the upstream honors them, refused when it does not, bounded per
session, and closed with the session (the upstream here is a stand-in for `Upstream.watch_resource`; the
real path runs against the fixture server in `test_gateway_mcp_server_features`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from accord.errors import AccordError
from accord.tokens import AccessClaims
from gateway.caller import Caller
from gateway.policy import Subject
from gateway.resource_watches import MAX_PER_SESSION, ResourceWatches
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


def caller(client_id: str) -> Caller:
    claims = AccessClaims(
        iss="https://gateway.test",
        sub=client_id,
        aud=("https://gateway.test/mcp",),
        client_id=client_id,
        scopes=frozenset({"resources:fixture"}),
        iat=0,
        exp=2**31,
        jti=client_id,
    )
    return Caller(claims, Subject(client_id))


CALLER = caller("watcher")


async def test_a_watch_answers_once_honored_and_closes_with_its_session() -> None:
    watches, stand_in, heard = ResourceWatches(retry_interval=0.01), StandInUpstream(), []

    async def notify() -> None:
        heard.append(1)

    await watches.subscribe("s1", "test://a", upstream(stand_in), notify, CALLER)
    await watches.subscribe("s1", "test://a", upstream(stand_in), notify, CALLER)  # again: one watch
    await watches.subscribe("s2", "test://a", upstream(stand_in), notify, CALLER)
    await asyncio.sleep(0)
    assert watches.watching("s1") == {"test://a"} and heard == [1, 1]  # noqa: PT018
    watches.end_session("s1")
    await asyncio.sleep(0.01)
    assert watches.watching("s1") == set() and watches.watching("s2") == {"test://a"}  # noqa: PT018
    await watches.aclose()
    assert stand_in.open == set()


async def test_a_watch_the_upstream_does_not_honor_is_refused_and_not_kept() -> None:
    watches = ResourceWatches(retry_interval=0.01)

    async def notify() -> None:
        raise AssertionError("never notified")

    with pytest.raises(AccordError) as refused:
        await watches.subscribe("s1", "test://a", upstream(StandInUpstream(honors=False)), notify, CALLER)
    assert refused.value.reason == "upstream_unavailable"
    await asyncio.sleep(0)
    assert watches.watching("s1") == set()


async def test_a_session_holds_a_bounded_number_of_watches() -> None:
    watches, stand_in = ResourceWatches(retry_interval=0.01), StandInUpstream()

    async def notify(*_: Any) -> None:
        return None

    for n in range(MAX_PER_SESSION):
        await watches.subscribe("s1", f"test://{n}", upstream(stand_in), notify, CALLER)
    with pytest.raises(AccordError) as refused:
        await watches.subscribe("s1", "test://one-more", upstream(stand_in), notify, CALLER)
    assert refused.value.reason == "policy_denied"
    await watches.aclose()


async def test_subscribing_again_waits_for_the_same_watch_to_be_taken() -> None:
    watches, stand_in = ResourceWatches(retry_interval=0.01), StandInUpstream(honors=False)

    async def notify() -> None:
        return None

    first = asyncio.create_task(watches.subscribe("s1", "test://a", upstream(stand_in), notify, CALLER))
    second = asyncio.create_task(watches.subscribe("s1", "test://a", upstream(stand_in), notify, CALLER))
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(outcome, AccordError) for outcome in outcomes)


async def test_the_session_is_served_as_the_caller_of_its_latest_request_while_it_watches() -> None:
    watches, stand_in = ResourceWatches(retry_interval=0.01), StandInUpstream()

    async def notify() -> None:
        return None

    watches.refresh("s1", caller("early"))  # no watch yet: nothing is kept
    assert watches.caller("s1") is None
    await watches.subscribe("s1", "test://a", upstream(stand_in), notify, CALLER)
    assert watches.caller("s1") is CALLER
    renewed = caller("watcher")
    watches.refresh("s1", renewed)
    assert watches.caller("s1") is renewed
    watches.unsubscribe("s1", "test://a")
    await asyncio.sleep(0.01)
    assert watches.caller("s1") is None  # its last watch is gone, and so is what it was served as
    await watches.aclose()
