"""The gateway's real OAuth server (clients, grants, token exchange) on a loopback socket, for tests.

`oauth_gateway` serves it with the orchestrator and the three credit-risk agents registered (`mesh_clients`);
tests reach it as `OAuthGateway` (its URL, dependencies and audit log) and mint grants through it.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp

from accord.audit import AuditLog
from accord.errors import AccordError
from accord.gateway_client import GRANTS_ISSUE_SCOPE, GatewayClient, tool_scope
from accord.service import create_service_app
from accord.storage import create_engine
from accord.tokens import AccessClaims
from gateway.oauth import OAuthConfig, OAuthDeps, build_oauth, create_oauth_router
from tests.oauth_server import bound_socket, serving

WAIT_S = 10.0
ADMIN_SECRET = "admin-secret-0123456789abcdef"
ORCHESTRATOR_SECRET = "orchestrator-secret-0123456789"
AGENT_SECRETS = {
    "sanctions-agent": "sanctions-agent-secret-0123456789",
    "bureau-agent": "bureau-agent-secret-0123456789",
    "ledger-agent": "ledger-agent-secret-0123456789",
}
AGENT_TOOLS = {
    "sanctions-agent": ("sanctions.search",),
    "bureau-agent": ("bureau.get_credit_file",),
    "ledger-agent": ("ledger.get_account", "ledger.aggregate_by_period", "ledger.aggregate_by_counterparty"),
}


def mesh_clients(policy: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """The orchestrator and the three agents as the gateway registers them; `policy` maps an agent to the
    tools its grants may hold (default: the tools each one declares)."""
    tools = AGENT_TOOLS if policy is None else policy
    return [
        {
            "client_id": "orchestrator",
            "kind": "orchestrator",
            "secret": ORCHESTRATOR_SECRET,
            "scopes": [GRANTS_ISSUE_SCOPE],
        },
        *(
            {
                "client_id": agent,
                "kind": "agent",
                "secret": secret,
                "grant_scopes": [tool_scope(tool) for tool in tools.get(agent, ())],
            }
            for agent, secret in AGENT_SECRETS.items()
        ),
    ]


@dataclass
class OAuthGateway:
    url: str
    deps: OAuthDeps
    audit: AuditLog

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"

    async def grant(
        self,
        agent: str,
        tools: Sequence[str],
        wf: str | None = None,
        task: str = "step-1",
        deadline_s: float = 60.0,
    ) -> tuple[str, str]:
        """A grant as the orchestrator's dispatch gets it, straight from the grant authority: (id, JWT)."""
        issued = await self.deps.grants.issue_grant(
            agent=agent,
            scopes=[tool_scope(tool) for tool in tools],
            wf=wf or "wf-" + uuid.uuid4().hex[:8],
            task=task,
            deadline=time.time() + deadline_s,
            audience=self.mcp_url,
            delegated_by="orchestrator",
        )
        return issued.grant.grant_id, issued.token

    def verified(self, token: str) -> AccessClaims:
        claims: AccessClaims = self.deps.access_token_verifier().verify(token)
        return claims

    async def token_issuances(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = await self.audit.records()
        return [r for r in records if r["action"] == "oauth.token" and r["outcome"] == "allowed"]


@asynccontextmanager
async def oauth_gateway(
    state_dir: Path,
    clients: list[dict[str, Any]] | None = None,
    routers: Callable[[OAuthDeps], Sequence[APIRouter]] = lambda _deps: (),
    mcp_app: ASGIApp | None = None,
    mcp_lifespan: Callable[[], Any] | None = None,
    sock: socket.socket | None = None,
) -> AsyncIterator[OAuthGateway]:
    """The gateway's authorization server (plus `routers(deps)` and `mcp_app` mounted at the root), on
    `sock` when the caller needs the URL first."""
    sock = sock or bound_socket()
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # As the gateway configures it: its own APIs (the grant API) are addressed by its base URL.
    config = OAuthConfig(
        issuer=issuer,
        mcp_resource=issuer + "/mcp",
        extra_resources=frozenset({issuer}),
        admin_secret=ADMIN_SECRET,
    )
    clients_file = state_dir / "clients.yaml"
    clients_file.write_text(yaml.safe_dump({"clients": mesh_clients() if clients is None else clients}))
    engine = create_engine(f"sqlite+aiosqlite:///{state_dir / 'gateway.db'}")
    audit = AuditLog(engine, "gateway")
    deps = build_oauth(config, engine, audit, state_dir / "gateway-keys.json", clients_file=clients_file)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await audit.initialize()
        await deps.initialize()
        async with AsyncExitStack() as stack:
            if mcp_lifespan is not None:
                await stack.enter_async_context(mcp_lifespan())
            try:
                yield
            finally:
                await deps.aclose()

    app: FastAPI = create_service_app("gateway", lifespan=lifespan)
    app.include_router(create_oauth_router(deps))
    for router in routers(deps):
        app.include_router(router)
    if mcp_app is not None:
        app.mount("/", mcp_app)
    try:
        async with serving(app, sock):
            yield OAuthGateway(issuer, deps, audit)
    finally:
        await engine.dispose()


def agent_client(gateway: OAuthGateway, agent: str, **kwargs: Any) -> GatewayClient:
    return GatewayClient(gateway.url, agent, AGENT_SECRETS[agent], **kwargs)


async def refused(pending: Awaitable[object]) -> AccordError:
    with pytest.raises(AccordError) as caught:
        await pending
    return caught.value
