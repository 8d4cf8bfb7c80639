"""The common shape of the upstream MCP tool servers (`sanctions-tools`, `bureau-tools`, `ledger-tools`).

Each tool server is an `MCPServer` served over streamable HTTP at `/mcp`, inside the usual Accord service
app (`/healthz`, `/readyz`, `/metrics`). Only the gateway may call it: every path except the three probes
requires `Authorization: Bearer <ACCORD_TOOLS_GATEWAY_SECRET>`. The secret is shared with the gateway alone,
so an agent's own token is worthless here even if it leaked.
"""

from __future__ import annotations

import asyncio
import hmac
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from accord.errors import AccordError
from accord.logs import configure_logging
from accord.service import create_service_app, serve
from accord.settings import ServiceSettings
from accord.topology import repo_root

MCP_PATH = "/mcp"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
HEADER_RING_SIZE = 1000
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def _default_data_dir() -> Path:
    return repo_root() / "data"


class ToolsSettings(ServiceSettings):
    """What a tool server reads from its environment, on top of the common service settings."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", extra="ignore", populate_by_name=True)

    tools_gateway_secret: SecretStr = Field(min_length=16)
    data_dir: Path = Field(default_factory=_default_data_dir)
    fault_latency_ms: int = Field(default=0, ge=0, le=120_000)
    # Test-only evidence for "the caller's token never reaches the upstream": off unless asked for.
    record_headers: bool = Field(default=False, validation_alias="ACCORD_TOOLS_RECORD_HEADERS")


class HeaderRecorder:
    """The headers of the last `size` requests that reached `/mcp`, oldest first."""

    def __init__(self, size: int = HEADER_RING_SIZE) -> None:
        self._requests: deque[dict[str, Any]] = deque(maxlen=size)

    def record(self, scope: Scope) -> None:
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope.get("headers", [])]
        self._requests.append({"method": scope.get("method", ""), "path": scope["path"], "headers": headers})

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self._requests)

    def clear(self) -> None:
        self._requests.clear()


def _unauthenticated(detail: str) -> JSONResponse:
    error = AccordError("unauthenticated", detail)
    return JSONResponse(
        error.to_body(),
        status_code=error.kind.http_status,
        headers={"WWW-Authenticate": 'Bearer realm="accord-tools"'},
    )


class GatewaySecretMiddleware:
    """Default deny: every path but the probes needs the gateway's bearer secret (constant-time check)."""

    def __init__(self, app: ASGIApp, secret: SecretStr, recorder: HeaderRecorder | None = None) -> None:
        self.app = app
        self._expected = f"Bearer {secret.get_secret_value()}".encode()
        self._recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._recorder is not None and scope["path"].rstrip("/") == MCP_PATH:
            self._recorder.record(scope)
        presented = Headers(scope=scope).get("authorization")
        if presented is None:
            await _unauthenticated("bearer token required")(scope, receive, send)
            return
        if not hmac.compare_digest(presented.encode(), self._expected):
            await _unauthenticated("bearer token not accepted")(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ToolCallCounter:
    """MCP middleware counting tool calls by tool and outcome (`accord_tool_calls_total` on /metrics)."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.calls = Counter(
            "accord_tool_calls_total",
            "MCP tool calls that reached the tool server, by tool and outcome",
            ["service", "tool", "outcome"],
            registry=registry,
        )

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        name = ctx.params.get("name") if ctx.params else None
        tool = name if isinstance(name, str) else "?"
        outcome = "error"
        try:
            result = await call_next(ctx)
            failed = isinstance(result, dict) and bool(result.get("isError"))
            outcome = "error" if failed else "ok"
            return result
        finally:
            self.calls.labels(self.service, tool, outcome).inc()


class FaultLatency:
    """MCP middleware that delays every tool call: lets tests model a slow upstream."""

    def __init__(self, delay_ms: int) -> None:
        self.delay = delay_ms / 1000

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            await asyncio.sleep(self.delay)
        return await call_next(ctx)


def transport_security(settings: ToolsSettings) -> TransportSecuritySettings:
    """DNS-rebinding protection that admits loopback, the bind host and the public URL's host."""
    if settings.host in _WILDCARD_BINDS:
        # Bound to every interface the service is reached by names we cannot know (container DNS); the
        # bearer secret, which a browser never holds, is the gate then.
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = {"127.0.0.1", "localhost", "[::1]", settings.host}
    if settings.public_url:
        public_host = urlsplit(settings.public_url).hostname
        if public_host:
            names.add(public_host)
    hosts = sorted(names | {f"{name}:*" for name in names})
    origins = sorted({f"{scheme}://{name}:*" for name in names for scheme in ("http", "https")})
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def _add_header_debug_routes(app: FastAPI, recorder: HeaderRecorder) -> None:
    @app.get("/debug/received-headers", include_in_schema=False)
    async def received_headers() -> dict[str, Any]:
        return {"requests": recorder.snapshot()}

    @app.delete("/debug/received-headers", include_in_schema=False)
    async def clear_received_headers() -> dict[str, Any]:
        recorder.clear()
        return {"cleared": True}


def create_tools_app(name: str, mcp: MCPServer, settings: ToolsSettings) -> FastAPI:
    """The tool server's HTTP app: probes, the MCP endpoint at `/mcp`, and the gateway-secret gate."""
    running = asyncio.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # A mounted app's own lifespan never runs, so the session manager is started here.
        async with mcp.session_manager.run():
            running.set()
            try:
                yield
            finally:
                running.clear()

    async def mcp_running() -> bool:
        return running.is_set()

    app = create_service_app(name, lifespan=lifespan, readiness=[mcp_running])
    mcp.middleware.append(ToolCallCounter(name, app.state.metrics.registry))
    if settings.fault_latency_ms > 0:
        mcp.middleware.append(FaultLatency(settings.fault_latency_ms))
    mcp_app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        # JSON unless a tool sends progress or log messages while it runs: then an SSE stream carries them.
        json_response=False,
        transport_security=transport_security(settings),
    )
    recorder = HeaderRecorder() if settings.record_headers else None
    if recorder is not None:
        _add_header_debug_routes(app, recorder)
    # Innermost user middleware, so the metrics middleware also counts the 401s.
    app.user_middleware.append(
        Middleware(GatewaySecretMiddleware, secret=settings.tools_gateway_secret, recorder=recorder)
    )
    app.mount("/", mcp_app)  # last: the MCP app answers /mcp and 404s everything else
    return app


def load_tools_settings() -> ToolsSettings:
    """Settings from the environment; exits with the failing field names only (never their values)."""
    try:
        return ToolsSettings()  # type: ignore[call-arg]  # required fields come from the environment
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        sys.exit(f"invalid tool server settings: {problems}")


def run_tools_server(name: str, build_mcp: Callable[[ToolsSettings], MCPServer]) -> None:
    """Entry point for `python -m <name>_tools`: read settings, build the MCP server, serve until SIGTERM."""
    settings = load_tools_settings()
    configure_logging(name, settings.log_level)
    app = create_tools_app(name, build_mcp(settings), settings)
    asyncio.run(serve(app, settings.host, settings.port))
