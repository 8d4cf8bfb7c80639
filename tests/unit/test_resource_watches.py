"""Resource watches: answered once the upstream honors them, refused when it does not, bounded per
session, and closed with the session (the upstream here is a stand-in for `Upstream.watch_resource`; the
real path runs against the fixture server in `test_gateway_mcp_server_features`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from accord.errors import AccordError
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


async def test_a_watch_answers_once_honored_and_closes_with_its_session() -> None:
    watches, stand_in, heard = ResourceWatches(retry_interval=0.01), StandInUpstream(), []

    async def notify() -> None:
        heard.append(1)

    await watches.subscribe("s1", "test://a", upstream(stand_in), notify)
    await watches.subscribe("s1", "test://a", upstream(stand_in), notify)  # again: one watch
    await watches.subscribe("s2", "test://a", upstream(stand_in), notify)
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
        await watches.subscribe("s1", "test://a", upstream(StandInUpstream(honors=False)), notify)
    assert refused.value.reason == "upstream_unavailable"
    await asyncio.sleep(0)
    assert watches.watching("s1") == set()


async def test_a_session_holds_a_bounded_number_of_watches() -> None:
    watches, stand_in = ResourceWatches(retry_interval=0.01), StandInUpstream()

    async def notify(*_: Any) -> None:
        return None

    for n in range(MAX_PER_SESSION):
        await watches.subscribe("s1", f"test://{n}", upstream(stand_in), notify)
    with pytest.raises(AccordError) as refused:
        await watches.subscribe("s1", "test://one-more", upstream(stand_in), notify)
    assert refused.value.reason == "policy_denied"
    await watches.aclose()


async def test_subscribing_again_waits_for_the_same_watch_to_be_taken() -> None:
    watches, stand_in = ResourceWatches(retry_interval=0.01), StandInUpstream(honors=False)

    async def notify() -> None:
        return None

    first = asyncio.create_task(watches.subscribe("s1", "test://a", upstream(stand_in), notify))
    second = asyncio.create_task(watches.subscribe("s1", "test://a", upstream(stand_in), notify))
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(outcome, AccordError) for outcome in outcomes)
