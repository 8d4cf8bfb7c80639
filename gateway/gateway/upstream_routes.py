"""`GET /v1/upstreams`: the operator's view of the federated tool servers (never their secrets)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.catalog import ToolCatalog
from gateway.upstreams import UpstreamPool, UpstreamStatus


class UpstreamView(BaseModel):
    name: str
    url: str
    status: UpstreamStatus
    connected_once: bool
    tools: int | None  # as last listed; None until the upstream has been listed once


class UpstreamsView(BaseModel):
    upstreams: list[UpstreamView]


def upstreams_router(pool: UpstreamPool, catalog: ToolCatalog) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["upstreams"])

    @router.get("/upstreams")
    async def list_upstreams() -> UpstreamsView:
        await catalog.tools()  # refreshes stale listings, and so retries upstreams that are down
        return UpstreamsView(
            upstreams=[
                UpstreamView(
                    name=upstream.name,
                    url=upstream.url,
                    status=upstream.status,
                    connected_once=upstream.ever_connected,
                    tools=catalog.tool_count(upstream.name),
                )
                for upstream in pool
            ]
        )

    return router
