"""The gateway's authorization server (its OAuth router alone, as the gateway mounts it), for tests.

`authorization_server` serves it on a free port over a real SQLite file; `standard_clients` registers the
orchestrator, two agents (secret and private_key_jwt) and an outside caller. `MemoryTokenStorage` is the MCP
SDK's token storage for OAuth clients of it.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import uvicorn
import yaml
from fastapi import FastAPI
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from accord.audit import AuditLog
from accord.keys import SigningKey
from accord.service import OwnSignalsServer, create_service_app
from accord.storage import create_engine
from gateway.oauth import OAuthConfig, OAuthDeps, build_oauth, create_oauth_router

WAIT = 10.0
ADMIN_SECRET = "admin-secret-0123456789abcdef"
ORCHESTRATOR_SECRET = "orchestrator-secret-0123456789"
SANCTIONS_SECRET = "sanctions-agent-secret-0123456789"
CALLER_SECRET = "outside-caller-secret-0123456789"
ORCHESTRATOR_API = "http://127.0.0.1:8702"
SEARCH = "tool:sanctions.search"
GET_ACCOUNT = "tool:ledger.get_account"
AGGREGATE = "tool:ledger.aggregate_by_period"


# --- harness (shared with the other test_oauth_* modules)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll until `check` holds, failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polling a condition with no event to wait on
            await asyncio.sleep(0.02)


def bound_socket(port: int = 0) -> socket.socket:
    """A loopback socket (a free port unless given), bound now: the URL is known before the app is built."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serving(app: Any, sock: socket.socket) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop until the block ends."""
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = OwnSignalsServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        return server.started or task.done()

    try:
        await eventually(started)
        if task.done():
            task.result()
            raise RuntimeError("server stopped during startup")
        yield url_of(sock)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
        sock.close()


@dataclass
class AuthServer:
    url: str
    deps: OAuthDeps
    audit: AuditLog

    @property
    def token_endpoint(self) -> str:
        return self.url + "/oauth/token"

    async def audit_records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = await self.audit.records()
        return records


@asynccontextmanager
async def authorization_server(
    state_dir: Path,
    clients: list[dict[str, Any]],
    mcp_resource: str | None = None,
    redis_url: str | None = None,
    sock: socket.socket | None = None,
    issuer: str | None = None,
    redis_prefix: str = "accord:gateway:",
) -> AsyncIterator[AuthServer]:
    """The OAuth router alone in a service app, as the gateway will mount it, on a free port.

    Servers started on the same `state_dir` with the same `issuer` behave as replicas of one gateway.
    """
    sock = sock or bound_socket()
    issuer = issuer or url_of(sock)
    config = OAuthConfig(
        issuer=issuer,
        mcp_resource=mcp_resource or issuer + "/mcp",
        extra_resources=frozenset({ORCHESTRATOR_API}),
        admin_secret=ADMIN_SECRET,
    )
    clients_file = state_dir / "clients.yaml"
    clients_file.write_text(yaml.safe_dump({"clients": clients}))
    engine = create_engine(f"sqlite+aiosqlite:///{state_dir / 'gateway.db'}")
    audit = AuditLog(engine, "gateway")
    # The wiring the gateway uses: build synchronously, mount the router, initialize in the lifespan.
    deps = build_oauth(
        config,
        engine,
        audit,
        state_dir / "gateway-keys.json",
        redis_url=redis_url,
        clients_file=clients_file,
        redis_prefix=redis_prefix,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await audit.initialize()
        await deps.initialize()
        try:
            yield
        finally:
            await deps.aclose()

    app: FastAPI = create_service_app("gateway", lifespan=lifespan)
    app.include_router(create_oauth_router(deps))
    try:
        async with serving(app, sock) as url:
            yield AuthServer(url=url, deps=deps, audit=audit)
    finally:
        await engine.dispose()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def agent_key() -> SigningKey:
    return SigningKey.generate("ES256")


def standard_clients(ledger_key: SigningKey) -> list[dict[str, Any]]:
    return [
        {"client_id": "orchestrator", "kind": "orchestrator", "secret": ORCHESTRATOR_SECRET, "scopes": []},
        {
            "client_id": "sanctions-agent",
            "kind": "agent",
            "secret": SANCTIONS_SECRET,
            "grant_scopes": [SEARCH],
        },
        {
            "client_id": "ledger-agent",
            "kind": "agent",
            "jwk": ledger_key.public_jwk(),
            "grant_scopes": [GET_ACCOUNT, AGGREGATE],
        },
        {
            "client_id": "outside-caller",
            "kind": "external",
            "secret": CALLER_SECRET,
            "scopes": ["agent:orchestrator.credit-risk", SEARCH],
        },
    ]


def assertion_for(key: SigningKey, client_id: str, audience: str, lifetime_s: int = 60, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": uuid.uuid4().hex,
        **extra,
    }
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid})


class MemoryTokenStorage:
    """The SDK's TokenStorage protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info
