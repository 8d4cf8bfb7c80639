"""One kind of listing (tools, resources, prompts) of every upstream, cached per upstream for a short TTL.

A down upstream drops out of what is listed now, but its last listing is kept, so what it offered still
resolves to it (and a request for it then fails as `upstream_unavailable`, not as unknown).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from accord.errors import AccordError
from gateway.upstreams import Upstream, UpstreamFailure, UpstreamPool

T = TypeVar("T")


@dataclass(frozen=True)
class _Listing(Generic[T]):
    value: T
    fetched_at: float


class UpstreamListings(Generic[T]):
    """`fetch(upstream)` of every upstream, refreshed per upstream when older than `ttl` seconds."""

    def __init__(
        self,
        pool: UpstreamPool,
        ttl: float,
        fetch: Callable[[Upstream], Awaitable[T]],
        clock: Callable[[], float] = time.monotonic,
        failure_ttl: float = 0.0,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._fetch = fetch
        self._clock = clock
        # How long an upstream that could not be asked is not asked again (0: ask on every request).
        self._failure_ttl = failure_ttl
        self._failed_at: dict[str, float] = {}
        self._listings: dict[str, _Listing[T]] = {}
        self._locks = {upstream.name: asyncio.Lock() for upstream in pool}

    def _is_fresh(self, upstream: str) -> bool:
        listing = self._listings.get(upstream)
        return listing is not None and self._clock() - listing.fetched_at < self._ttl

    async def refresh(self, upstream: Upstream) -> bool:
        """Bring one upstream's listing up to date; False when the upstream could not be asked."""
        async with self._locks[upstream.name]:
            if self._is_fresh(upstream.name):  # another request refreshed it while this one waited
                return True
            failed_at = self._failed_at.get(upstream.name)
            if failed_at is not None and self._clock() - failed_at < self._failure_ttl:
                return False
            try:
                value = await self._fetch(upstream)
            except (UpstreamFailure, AccordError):
                self._failed_at[upstream.name] = self._clock()
                return False
            self._failed_at.pop(upstream.name, None)
            self._listings[upstream.name] = _Listing(value, self._clock())
            return True

    async def answering(self) -> list[tuple[Upstream, T]]:
        """The listing of every upstream that answers now, in configuration order."""
        upstreams = list(self._pool)
        answered = await asyncio.gather(*(self.refresh(upstream) for upstream in upstreams))
        return [
            (upstream, self._listings[upstream.name].value)
            for upstream, ok in zip(upstreams, answered, strict=True)
            if ok
        ]

    async def of(self, upstream: Upstream) -> T | None:
        """The upstream's listing, refreshed if stale; its last one when it is down; None if it never
        answered."""
        await self.refresh(upstream)
        return self.cached(upstream.name)

    def cached(self, upstream: str) -> T | None:
        listing = self._listings.get(upstream)
        return listing.value if listing is not None else None
