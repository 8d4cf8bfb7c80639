"""The federated tool catalog: every upstream's tools under `<upstream>.<tool>`, cached for a short TTL.

Schemas pass through unchanged, so callers validate arguments and results exactly as the upstream defines
them. A down upstream drops out of `tools/list`, but its last known tools still resolve, so a call to one of
them fails as `upstream_unavailable` rather than as an unknown tool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from accord.errors import AccordError
from gateway.upstreams import Upstream, UpstreamFailure, UpstreamPool

SEPARATOR = "."


def federated_name(upstream: str, tool: str) -> str:
    return f"{upstream}{SEPARATOR}{tool}"


def split_federated_name(name: str) -> tuple[str, str]:
    """`sanctions.search` -> (`sanctions`, `search`); the upstream part never contains the separator."""
    upstream, separator, tool = name.partition(SEPARATOR)
    if not separator or not upstream or not tool:
        raise AccordError("unknown_tool", "tool names have the form <upstream>.<tool>")
    return upstream, tool


@dataclass(frozen=True)
class FederatedTool:
    """One upstream tool as the gateway publishes it."""

    upstream: str
    upstream_tool: str
    tool: types.Tool

    @property
    def name(self) -> str:
        return self.tool.name


@dataclass(frozen=True)
class _Listing:
    tools: dict[str, FederatedTool]
    fetched_at: float


class ToolCatalog:
    """The tools of all upstreams, refreshed per upstream when older than `ttl` seconds."""

    def __init__(self, pool: UpstreamPool, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        self._listings: dict[str, _Listing] = {}
        self._locks = {upstream.name: asyncio.Lock() for upstream in pool}

    def _is_fresh(self, upstream: str) -> bool:
        listing = self._listings.get(upstream)
        return listing is not None and self._clock() - listing.fetched_at < self._ttl

    async def _refresh(self, upstream: Upstream) -> bool:
        """Bring one upstream's listing up to date; False when the upstream could not be asked."""
        async with self._locks[upstream.name]:
            if self._is_fresh(upstream.name):  # another request refreshed it while we waited
                return True
            try:
                tools = await upstream.list_tools()
            except UpstreamFailure:
                return False
            published = (
                FederatedTool(
                    upstream.name,
                    tool.name,
                    tool.model_copy(update={"name": federated_name(upstream.name, tool.name)}),
                )
                for tool in tools
            )
            self._listings[upstream.name] = _Listing({t.name: t for t in published}, self._clock())
            return True

    async def tools(self) -> list[types.Tool]:
        """The published tools of every upstream that answers now, in configuration order."""
        upstreams = list(self._pool)
        answered = await asyncio.gather(*(self._refresh(upstream) for upstream in upstreams))
        return [
            federated.tool
            for upstream, ok in zip(upstreams, answered, strict=True)
            if ok
            for federated in self._listings[upstream.name].tools.values()
        ]

    async def resolve(self, name: str) -> FederatedTool:
        """The tool behind a federated name. `AccordError('unknown_tool')` when there is none;
        `UpstreamFailure` when the upstream is down and its tools were never listed."""
        upstream_name, tool_name = split_federated_name(name)
        upstream = self._pool.get(upstream_name)
        if upstream is None:
            raise AccordError("unknown_tool", f"no upstream is named {upstream_name!r}")
        await self._refresh(upstream)
        listing = self._listings.get(upstream_name)
        if listing is None:
            raise UpstreamFailure("upstream_unavailable", f"upstream {upstream_name!r} is unavailable")
        federated = listing.tools.get(name)
        if federated is None:
            raise AccordError("unknown_tool", f"upstream {upstream_name!r} has no tool {tool_name!r}")
        return federated

    def cached_input_schema(self, name: str) -> dict[str, Any] | None:
        """The input schema from the cache only: the SDK asks synchronously to check `Mcp-Param-*` headers."""
        upstream_name = name.partition(SEPARATOR)[0]
        listing = self._listings.get(upstream_name)
        federated = listing.tools.get(name) if listing else None
        return federated.tool.input_schema if federated else None

    def tool_count(self, upstream: str) -> int | None:
        """How many tools the upstream listed last time, or None when it never has."""
        listing = self._listings.get(upstream)
        return len(listing.tools) if listing else None
