"""RFC 9728 protected resource metadata: where a resource's tokens come from and which scopes exist.

Served at `/.well-known/oauth-protected-resource<path>` (the path-suffixed form the MCP spec points to from
`WWW-Authenticate`) and at `/.well-known/oauth-protected-resource`. For the gateway's `/mcp`,
`scopes_supported` lists one `tool:<upstream>.<tool>` scope per federated tool (an MCP client that asks for
all of them through client credentials gets the ones its registration holds: `gateway.oauth.token_service`);
for the orchestrator's API, the `runs:*` scopes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import APIRouter
from fastapi.responses import JSONResponse

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def resource_metadata_url(base_url: str, resource_path: str) -> str:
    return base_url + WELL_KNOWN + resource_path


def resource_metadata_router(
    resource: str,
    resource_path: str,
    authorization_servers: Sequence[str],
    scopes: Callable[[], Awaitable[list[str]]],
    resource_name: str,
) -> APIRouter:
    router = APIRouter(tags=["oauth"])

    async def metadata() -> JSONResponse:
        document = {
            "resource": resource,
            "authorization_servers": list(authorization_servers),
            "scopes_supported": sorted(set(await scopes())),
            "bearer_methods_supported": ["header"],
            "resource_name": resource_name,
        }
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=60"})

    for path in dict.fromkeys((WELL_KNOWN + resource_path, WELL_KNOWN)):
        router.add_api_route(path, metadata, methods=["GET"], include_in_schema=False)
    return router
