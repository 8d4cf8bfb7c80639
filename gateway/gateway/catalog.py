"""The federated tool catalog: every upstream's tools under `<upstream>.<tool>`, cached for a short TTL.

Schemas pass through unchanged, so callers validate arguments and results exactly as the upstream defines
them. A down upstream drops out of `tools/list`, but its last known tools still resolve, so a call to one of
them fails as `upstream_unavailable` rather than as an unknown tool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from accord.errors import AccordError
from gateway.federated_names import SEPARATOR, federated_name
from gateway.listings import UpstreamListings
from gateway.upstreams import Upstream, UpstreamFailure, UpstreamPool


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


async def _published(upstream: Upstream) -> dict[str, FederatedTool]:
    tools = await upstream.list_tools()
    renamed = (tool.model_copy(update={"name": federated_name(upstream.name, tool.name)}) for tool in tools)
    published = (
        FederatedTool(upstream.name, tool.name, named) for tool, named in zip(tools, renamed, strict=True)
    )
    return {federated.name: federated for federated in published}


class ToolCatalog:
    """The tools of all upstreams, refreshed per upstream when older than `ttl` seconds."""

    def __init__(self, pool: UpstreamPool, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._listings = UpstreamListings(pool, ttl, _published, clock)

    async def tools(self) -> list[types.Tool]:
        """The published tools of every upstream that answers now, in configuration order."""
        return [
            federated.tool for _, tools in await self._listings.answering() for federated in tools.values()
        ]

    async def resolve(self, name: str) -> FederatedTool:
        """The tool behind a federated name. `AccordError('unknown_tool')` when there is none;
        `UpstreamFailure` when the upstream is down and its tools were never listed."""
        upstream_name, tool_name = split_federated_name(name)
        upstream = self._pool.get(upstream_name)
        if upstream is None:
            raise AccordError("unknown_tool", f"no upstream is named {upstream_name!r}")
        listing = await self._listings.of(upstream)
        if listing is None:
            raise UpstreamFailure("upstream_unavailable", f"upstream {upstream_name!r} is unavailable")
        federated = listing.get(name)
        if federated is None:
            raise AccordError("unknown_tool", f"upstream {upstream_name!r} has no tool {tool_name!r}")
        return federated

    def cached_input_schema(self, name: str) -> dict[str, Any] | None:
        """The input schema from the cache only: the SDK asks synchronously to check `Mcp-Param-*` headers."""
        listing = self._listings.cached(name.partition(SEPARATOR)[0])
        federated = listing.get(name) if listing else None
        return federated.tool.input_schema if federated else None

    def tool_count(self, upstream: str) -> int | None:
        """How many tools the upstream listed last time, or None when it never has."""
        listing = self._listings.cached(upstream)
        return len(listing) if listing is not None else None
