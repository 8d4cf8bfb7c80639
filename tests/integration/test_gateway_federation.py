"""The gateway's MCP endpoint federates real upstream MCP servers over loopback HTTP.

The upstreams here are small `MCPServer` apps behind a bearer check that record every request's headers and
every tool invocation; they stand in for the `*-tools` services. Callers use the real `mcp.Client` with an
access token from the gateway's own token endpoint (an outside client registered with two tool scopes and
allowed them by the tool policy), since `/mcp` always requires one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
import yaml
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from accord.audit import verify_chain
from accord.service import OwnSignalsServer
from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.tool_audit import argument_digest

CALLER = "agent-7"
CALLER_SECRET = "agent-7-client-secret-0123456789"
SANCTIONS_SECRET = "sanctions-gateway-secret-0123456789"
LEDGER_SECRET = "ledger-gateway-secret-9876543210"
WAIT = 10.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
FORBIDDEN_ACCOUNT = "ACC-FORBIDDEN"
CLIENTS = {
    "clients": [
        {
            "client_id": CALLER,
            "kind": "external",
            "secret": CALLER_SECRET,
            # `sanctions.nosuch` names no real tool: its calls pass authorization and meet the catalog.
            "scopes": ["tool:sanctions.search", "tool:sanctions.nosuch", "tool:ledger.get_account"],
        }
    ]
}
POLICY = {
    "version": 1,
    "clients": {
        CALLER: {
            "tools": [
                {"tool": "sanctions.*"},
                {
                    "tool": "ledger.get_account",
                    "id": "numbered-accounts",
                    "arguments": {"account_id": {"pattern": "ACC-[0-9]+|closed"}},
                },
            ]
        }
    },
}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll until `check` holds, failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


# --- upstream stand-ins -------------------------------------------------------------------------------------


class Match(BaseModel):
    entry_id: str
    primary_name: str
    score: float


class SearchResult(BaseModel):
    query: str
    matches: list[Match]


class Account(BaseModel):
    account_id: str
    found: bool
    holder_name: str


@dataclass
class Recorder:
    """What one upstream saw: the headers of every HTTP request and every tool invocation."""

    secret: str
    headers: list[dict[str, str]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def saw_value(self, value: str) -> bool:
        return any(value in header for request in self.headers for header in request.values())

    def listings(self) -> int:
        """How many `tools/list` requests arrived (the gateway's client names the method in a header)."""
        return sum(1 for request in self.headers if request.get("mcp-method") == "tools/list")


def bearer_guard(app: ASGIApp, recorder: Recorder) -> ASGIApp:
    """Record each request's headers, then let only `Bearer <secret>` through (401 otherwise)."""
    expected = f"Bearer {recorder.secret}".encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {key.decode(): value.decode() for key, value in scope["headers"]}
            recorder.headers.append(headers)
            if not hmac.compare_digest(headers.get("authorization", "").encode(), expected):
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await app(scope, receive, send)

    return guarded


def sanctions_app(recorder: Recorder) -> ASGIApp:
    server = MCPServer("sanctions-standin")

    @server.tool()
    def search(name: str, limit: int = 5) -> SearchResult:
        """Screen a name against the list."""
        recorder.calls.append(("search", {"name": name, "limit": limit}))
        matches = [
            Match(entry_id=f"SL-{i}", primary_name=name.upper(), score=100.0 - i) for i in range(limit)
        ]
        return SearchResult(query=name, matches=matches)

    return bearer_guard(server.streamable_http_app(stateless_http=True), recorder)


def ledger_app(recorder: Recorder) -> ASGIApp:
    server = MCPServer("ledger-standin")

    @server.tool()
    def get_account(account_id: str) -> Account:
        """One account's holder."""
        recorder.calls.append(("get_account", {"account_id": account_id}))
        if account_id == "closed":
            raise ToolError("account is closed")
        return Account(account_id=account_id, found=True, holder_name=f"holder of {account_id}")

    return bearer_guard(server.streamable_http_app(stateless_http=True), recorder)


# --- servers on loopback ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoopbackServer:
    """An ASGI app served by uvicorn in this event loop, on a chosen or free loopback port."""

    def __init__(self, app: ASGIApp, port: int = 0) -> None:
        self._app = app
        self.port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> LoopbackServer:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, log_config=None, access_log=False, timeout_graceful_shutdown=2)
        server = self._server = OwnSignalsServer(config)
        task = self._task = asyncio.create_task(server.serve(sockets=[sock]))

        async def started() -> bool:
            return server.started or task.done()

        await eventually(started)
        if task.done():
            raise RuntimeError(f"server on port {self.port} failed to start")
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, WAIT)
            self._server = self._task = None


@dataclass
class Mesh:
    """Two upstreams and the gateway in front of them."""

    gateway: LoopbackServer
    app: Any
    sanctions: Recorder
    ledger: Recorder
    upstreams: dict[str, LoopbackServer]
    token: str
    audit_floor: int = 0

    @property
    def mcp_url(self) -> str:
        return self.gateway.url + "/mcp"

    async def audit_records(self) -> list[dict[str, Any]]:
        """The audit records written since the last `forget`."""
        records: list[dict[str, Any]] = await self.app.state.audit_log.records()
        return [record for record in records if record["seq"] > self.audit_floor]

    async def forget(self) -> None:
        """Start a test with clean recorders (the audit chain itself is append-only)."""
        for recorder in (self.sanctions, self.ledger):
            recorder.headers.clear()
            recorder.calls.clear()
        records = await self.app.state.audit_log.records()
        self.audit_floor = records[-1]["seq"] if records else 0

    async def http_get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            return await http.get(self.gateway.url + path)


def gateway_settings(tmp_path: Path, upstream_urls: dict[str, str], **overrides: Any) -> GatewaySettings:
    secrets = {"sanctions": SANCTIONS_SECRET, "ledger": LEDGER_SECRET}
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump(CLIENTS))
    (tmp_path / "tools.yaml").write_text(yaml.safe_dump(POLICY))
    values: dict[str, Any] = {
        "port": 8700,  # overridden by the callers that serve the app (the issuer URL names the real port)
        "state_dir": tmp_path,
        "gateway_clients_file": tmp_path / "clients.yaml",
        "gateway_policy_file": tmp_path / "tools.yaml",
        "gateway_upstreams": upstream_urls,
        "gateway_upstream_secrets": {name: secrets[name] for name in upstream_urls},
        "gateway_upstream_retry_seconds": 0.05,
        "gateway_upstream_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


async def caller_token(gateway_url: str) -> str:
    """The caller's access token from the gateway's token endpoint (client credentials)."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(
            gateway_url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CALLER, CALLER_SECRET),
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def serve_gateway(tmp_path: Path, urls: dict[str, str], **overrides: Any) -> tuple[Any, LoopbackServer]:
    port = free_port()
    app = create_app(gateway_settings(tmp_path, urls, port=port, **overrides))
    return app, await LoopbackServer(app, port).start()


@asynccontextmanager
async def running_mesh(tmp_path: Path, **overrides: Any) -> AsyncIterator[Mesh]:
    sanctions, ledger = Recorder(SANCTIONS_SECRET), Recorder(LEDGER_SECRET)
    upstreams = {
        "sanctions": await LoopbackServer(sanctions_app(sanctions)).start(),
        "ledger": await LoopbackServer(ledger_app(ledger)).start(),
    }
    urls = {name: server.url + "/mcp" for name, server in upstreams.items()}
    app, gateway = await serve_gateway(tmp_path, urls, **overrides)
    try:
        yield Mesh(gateway, app, sanctions, ledger, upstreams, await caller_token(gateway.url))
    finally:
        await gateway.stop()
        for upstream in upstreams.values():
            await upstream.stop()


@asynccontextmanager
async def caller(url: str, token: str, mode: str = "auto", **headers: str) -> AsyncIterator[Client]:
    """A caller of the gateway presenting its own bearer token (which must never travel further)."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", **headers}, timeout=WAIT)
    async with (
        http,
        Client(streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=WAIT) as c,
    ):
        yield c


@pytest.fixture(scope="module")
async def shared_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    async with running_mesh(tmp_path_factory.mktemp("gateway"), gateway_tools_ttl_seconds=3600) as running:
        yield running


@pytest.fixture
async def mesh(shared_mesh: Mesh) -> Mesh:
    """The module's mesh, for tests that leave its upstreams running."""
    await shared_mesh.forget()
    return shared_mesh


def reason_of(error: MCPError) -> str:
    assert isinstance(error.data, dict), error
    return str(error.data["reason"])


# --- behaviour ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_federated_tools_are_listed_under_upstream_names_with_their_schemas(
    mesh: Mesh, mode: str
) -> None:
    async with caller(mesh.mcp_url, mesh.token, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"sanctions.search", "ledger.get_account"}
    search = tools["sanctions.search"]
    assert search.input_schema["required"] == ["name"]
    assert set(search.input_schema["properties"]) == {"name", "limit"}
    assert search.output_schema is not None
    assert "matches" in search.output_schema["properties"]
    assert search.description == "Screen a name against the list."


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_call_returns_the_upstream_structured_result_marked_untrusted_with_provenance(
    mesh: Mesh, mode: str
) -> None:
    async with caller(mesh.mcp_url, mesh.token, mode) as client:
        await client.list_tools()
        result = await client.call_tool("sanctions.search", {"name": "Ivan Petrov", "limit": 2})
    assert result.is_error is False
    assert result.structured_content == {
        "query": "Ivan Petrov",
        "matches": [
            {"entry_id": "SL-0", "primary_name": "IVAN PETROV", "score": 100.0},
            {"entry_id": "SL-1", "primary_name": "IVAN PETROV", "score": 99.0},
        ],
    }
    assert mesh.sanctions.calls == [("search", {"name": "Ivan Petrov", "limit": 2})]
    assert result.meta is not None
    provenance = result.meta["accord/provenance"]
    assert provenance["upstream"] == "sanctions"
    assert provenance["tool"] == "search"
    assert provenance["untrusted"] is True
    assert provenance["received_at"].endswith("+00:00")
    if mode == "auto":  # the 2026-07-28 protocol stamps results with the answering server: the gateway
        assert result.meta["io.modelcontextprotocol/serverInfo"]["name"] == "accord-gateway"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_upstream_sees_the_gateway_secret_and_never_the_callers_token(
    mesh: Mesh, mode: str
) -> None:
    async with caller(
        mesh.mcp_url, mesh.token, mode, **{"X-Caller-Secret": "caller-private-header"}
    ) as client:
        await client.call_tool("sanctions.search", {"name": "Ana"})
        await client.call_tool("ledger.get_account", {"account_id": "ACC-1"})
    for recorder in (mesh.sanctions, mesh.ledger):
        assert recorder.calls, "the upstream was called"
        assert {h.get("authorization") for h in recorder.headers} == {f"Bearer {recorder.secret}"}
        assert not recorder.saw_value(mesh.token)
        assert not recorder.saw_value("caller-private-header")
    # Each upstream gets only its own credential.
    assert not mesh.ledger.saw_value(SANCTIONS_SECRET)
    assert not mesh.sanctions.saw_value(LEDGER_SECRET)


async def test_an_unknown_tool_is_a_protocol_error_and_reaches_no_upstream(mesh: Mesh) -> None:
    async with caller(mesh.mcp_url, mesh.token) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("sanctions.nosuch", {"name": "x"})
    assert reason_of(raised.value) == "unknown_tool"
    assert raised.value.code == -32602
    assert "has no tool" in raised.value.message
    assert mesh.sanctions.calls == []
    assert mesh.ledger.calls == []
    [record] = await mesh.audit_records()
    assert (record["outcome"], record["reason"], record["details"]["tool"]) == (
        "rejected",
        "unknown_tool",
        "sanctions.nosuch",
    )


@pytest.mark.parametrize("name", ["nosuch.search", "search"])
async def test_a_tool_outside_the_tokens_scopes_is_refused_before_the_catalog(mesh: Mesh, name: str) -> None:
    async with caller(mesh.mcp_url, mesh.token) as client:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the SDK reports an HTTP 403 as a transport error
            await client.call_tool(name, {"name": "x"})
    assert mesh.sanctions.calls == []
    [record] = await mesh.audit_records()
    assert (record["outcome"], record["reason"], record["details"]["tool"]) == (
        "denied",
        "insufficient_scope",
        name,
    )


async def test_tool_lists_are_served_from_the_catalog_cache_within_its_ttl(mesh: Mesh) -> None:
    async with caller(mesh.mcp_url, mesh.token) as client:
        await client.list_tools()
        await mesh.forget()
        for _ in range(3):
            assert len((await client.list_tools(cache_mode="refresh")).tools) == 2
        await client.call_tool("ledger.get_account", {"account_id": "ACC-1"})
    assert (mesh.sanctions.listings(), mesh.ledger.listings()) == (0, 0)


async def test_an_expired_catalog_asks_the_upstreams_again(tmp_path: Path) -> None:
    async with running_mesh(tmp_path, gateway_tools_ttl_seconds=0) as mesh:
        await mesh.forget()
        async with caller(mesh.mcp_url, mesh.token) as client:
            for _ in range(2):
                await client.list_tools(cache_mode="refresh")
        assert (mesh.sanctions.listings(), mesh.ledger.listings()) == (2, 2)


async def test_a_tool_error_from_the_upstream_passes_through_with_provenance(mesh: Mesh) -> None:
    async with caller(mesh.mcp_url, mesh.token) as client:
        result = await client.call_tool("ledger.get_account", {"account_id": "closed"})
    assert result.is_error is True
    assert "account is closed" in result.content[0].text  # type: ignore[union-attr]
    assert result.meta is not None
    assert result.meta["accord/provenance"]["upstream"] == "ledger"
    [record] = await mesh.audit_records()
    assert (record["outcome"], record["details"]["tool_error"]) == ("ok", True)


async def test_every_call_is_audited_with_an_argument_digest_and_never_the_raw_arguments(mesh: Mesh) -> None:
    arguments = {"name": "Zelda Quartermain-Unique", "limit": 1}
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    async with caller(mesh.mcp_url, mesh.token, traceparent=traceparent) as client:
        await client.call_tool("sanctions.search", arguments)
        with pytest.raises(MCPError):
            await client.call_tool("sanctions.nosuch", arguments)  # passes authorization, unknown upstream
    assert verify_chain(await mesh.app.state.audit_log.records()) is None
    records = await mesh.audit_records()
    ok, rejected = records
    assert ok["action"] == "tools/call"
    assert ok["service"] == "gateway"
    assert (ok["outcome"], ok["reason"], ok["trace_id"]) == ("ok", None, TRACE_ID)
    assert ok["details"]["tool"] == "sanctions.search"
    assert ok["details"]["upstream"] == "sanctions"
    assert ok["details"]["arguments_sha256"] == argument_digest(arguments)
    assert ok["details"]["duration_ms"] >= 0
    assert rejected["details"]["arguments_sha256"] == argument_digest(arguments)
    trail = json.dumps(records, default=str)
    for secret in ("Zelda", "Quartermain", mesh.token, SANCTIONS_SECRET, LEDGER_SECRET):
        assert secret not in trail


async def test_a_down_upstream_gives_an_error_result_while_the_others_keep_serving(tmp_path: Path) -> None:
    async with running_mesh(tmp_path) as mesh:
        await check_outage_and_recovery(mesh)


async def check_outage_and_recovery(mesh: Mesh) -> None:
    ledger = mesh.upstreams["ledger"]
    await ledger.stop()
    async with caller(mesh.mcp_url, mesh.token) as client:
        result = await client.call_tool("ledger.get_account", {"account_id": "ACC-1"})
        assert result.is_error is True
        assert result.meta is not None
        assert result.meta["accord/error"]["reason"] == "upstream_unavailable"
        assert result.content[0].text.startswith("upstream_unavailable:")  # type: ignore[union-attr]
        assert "Traceback" not in result.content[0].text  # type: ignore[union-attr]

        healthy = await client.call_tool("sanctions.search", {"name": "Ana", "limit": 1})
        assert healthy.is_error is False

        ready = await mesh.http_get("/readyz")
        assert ready.status_code == 200
        views = {u["name"]: u for u in (await mesh.http_get("/v1/upstreams")).json()["upstreams"]}
        assert views["ledger"]["status"] == "down"
        assert views["sanctions"]["status"] == "up"

        # The upstream comes back on the same address: the gateway reconnects on demand.
        mesh.upstreams["ledger"] = await LoopbackServer(ledger_app(mesh.ledger), ledger.port).start()

        async def ledger_answers() -> bool:
            again = await client.call_tool("ledger.get_account", {"account_id": "ACC-2"})
            return again.is_error is False

        await eventually(ledger_answers)
    failed = [r for r in await mesh.audit_records() if r["outcome"] == "failed"]
    assert failed
    assert {r["reason"] for r in failed} == {"upstream_unavailable"}
    assert {r["details"]["upstream"] for r in failed} == {"ledger"}


async def test_a_gateway_starts_with_an_upstream_down_and_becomes_ready_once_it_connects(
    tmp_path: Path,
) -> None:
    sanctions, ledger = Recorder(SANCTIONS_SECRET), Recorder(LEDGER_SECRET)
    up = await LoopbackServer(sanctions_app(sanctions)).start()
    ledger_port = free_port()
    urls = {"sanctions": up.url + "/mcp", "ledger": f"http://127.0.0.1:{ledger_port}/mcp"}
    _, gateway = await serve_gateway(tmp_path, urls)
    late: LoopbackServer | None = None
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=WAIT) as http:
            assert (await http.get("/readyz")).status_code == 503
            async with caller(gateway.url + "/mcp", await caller_token(gateway.url)) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert names == {"sanctions.search"}
                result = await client.call_tool("ledger.get_account", {"account_id": "ACC-1"})
                assert result.is_error is True
                assert result.meta is not None
                assert result.meta["accord/error"]["reason"] == "upstream_unavailable"

                late = await LoopbackServer(ledger_app(ledger), ledger_port).start()

                async def ready() -> bool:
                    return (await http.get("/readyz")).status_code == 200

                await eventually(ready)
                names = {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}
                assert names == {"sanctions.search", "ledger.get_account"}
    finally:
        await gateway.stop()
        for server in (up, late):
            if server is not None:
                await server.stop()


async def test_an_upstream_that_refuses_the_gateway_credential_stays_down(tmp_path: Path) -> None:
    impostor = Recorder("a-secret-the-gateway-does-not-have")
    upstream = await LoopbackServer(sanctions_app(impostor)).start()
    _, gateway = await serve_gateway(tmp_path, {"sanctions": upstream.url + "/mcp"})
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=WAIT) as http:
            assert (await http.get("/readyz")).status_code == 503
            [view] = (await http.get("/v1/upstreams")).json()["upstreams"]
        assert (view["status"], view["connected_once"], view["tools"]) == ("down", False, None)
        assert impostor.headers
        assert impostor.calls == []
    finally:
        await gateway.stop()
        await upstream.stop()


async def test_the_upstreams_view_lists_urls_status_and_tool_counts_without_secrets(mesh: Mesh) -> None:
    response = await mesh.http_get("/v1/upstreams")
    assert response.status_code == 200
    views = response.json()["upstreams"]
    assert [(v["name"], v["status"], v["tools"], v["connected_once"]) for v in views] == [
        ("sanctions", "up", 1, True),
        ("ledger", "up", 1, True),
    ]
    assert views[0]["url"] == mesh.upstreams["sanctions"].url + "/mcp"
    assert SANCTIONS_SECRET not in response.text
    assert LEDGER_SECRET not in response.text


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_policy_denial_stops_the_call_before_the_upstream_and_is_audited(
    mesh: Mesh, mode: str
) -> None:
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    async with caller(mesh.mcp_url, mesh.token, mode, traceparent=traceparent) as client:
        allowed = await client.call_tool("ledger.get_account", {"account_id": "ACC-1"})
        with pytest.raises(Exception):  # noqa: B017, PT011 - the SDK reports an HTTP 403 as a transport error
            await client.call_tool("ledger.get_account", {"account_id": FORBIDDEN_ACCOUNT})
    assert allowed.is_error is False
    assert mesh.ledger.calls == [("get_account", {"account_id": "ACC-1"})]
    ok, refused = await mesh.audit_records()
    assert (ok["actor"], ok["outcome"], ok["trace_id"]) == (CALLER, "ok", TRACE_ID)
    assert ok["details"]["rule"] == "numbered-accounts"
    assert (refused["actor"], refused["outcome"], refused["reason"]) == (CALLER, "denied", "policy_denied")
    assert refused["details"]["rule"] == "numbered-accounts"
    assert refused["trace_id"] == TRACE_ID


async def test_the_mcp_endpoint_is_closed_without_a_token(mesh: Mesh) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=WAIT) as http:
        refused = await http.post(mesh.mcp_url, json=body, headers=headers)
    assert refused.status_code == 401
    assert "resource_metadata=" in refused.headers["www-authenticate"]


async def test_the_mcp_endpoint_accepts_its_configured_host_and_refuses_others(tmp_path: Path) -> None:
    async with running_mesh(tmp_path, public_url="http://gateway.internal:8700") as mesh:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": "2025-11-25",
        }
        headers["authorization"] = f"Bearer {mesh.token}"
        async with httpx.AsyncClient(timeout=WAIT) as http:
            statuses = {}
            for host in ("gateway.internal:8700", f"127.0.0.1:{mesh.gateway.port}", "evil.example:8700"):
                response = await http.post(mesh.mcp_url, json=body, headers={**headers, "host": host})
                statuses[host] = response.status_code
    assert statuses["evil.example:8700"] == 421
    assert statuses["gateway.internal:8700"] == 200
    assert statuses[f"127.0.0.1:{mesh.gateway.port}"] == 200


@asynccontextmanager
async def open_session_stream(http: httpx.AsyncClient, token: str) -> AsyncIterator[httpx.Response]:
    """A handshake-version session on the gateway, with its standalone GET stream open."""
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    opened = await http.post(
        "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}, headers=headers
    )
    headers |= {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    async with http.stream("GET", "/mcp", headers=headers | {"accept": "text/event-stream"}) as stream:
        yield stream


async def test_python_m_gateway_serves_from_its_environment_and_stops_on_sigterm(tmp_path: Path) -> None:
    sanctions = Recorder(SANCTIONS_SECRET)
    upstream = await LoopbackServer(sanctions_app(sanctions)).start()
    port = free_port()
    env = {
        **os.environ,
        "ACCORD_HOST": "127.0.0.1",
        "ACCORD_PORT": str(port),
        "ACCORD_STATE_DIR": str(tmp_path),
        "ACCORD_GATEWAY_UPSTREAMS": json.dumps({"sanctions": upstream.url + "/mcp"}),
        "ACCORD_GATEWAY_UPSTREAM_SECRETS": json.dumps({"sanctions": SANCTIONS_SECRET}),
        "ACCORD_GATEWAY_CLIENTS_FILE": str(tmp_path / "clients.yaml"),
        "ACCORD_GATEWAY_POLICY_FILE": str(tmp_path / "tools.yaml"),
    }
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump(CLIENTS))
    (tmp_path / "tools.yaml").write_text(yaml.safe_dump(POLICY))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:

            async def ready() -> bool:
                if process.returncode is not None:
                    raise AssertionError("the gateway exited early")
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, timeout=30)
            upstreams = (await http.get("/v1/upstreams")).text
            assert SANCTIONS_SECRET not in upstreams
        token = await caller_token(f"http://127.0.0.1:{port}")
        async with caller(f"http://127.0.0.1:{port}/mcp", token) as client:
            result = await client.call_tool("sanctions.search", {"name": "Ana", "limit": 1})
        assert result.structured_content is not None
        assert result.structured_content["query"] == "Ana"
        assert not sanctions.saw_value(token)
        # A handshake client's session holds its GET stream open; SIGTERM still stops the gateway promptly.
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http,
            open_session_stream(http, token) as stream,
        ):
            assert stream.status_code == 200
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(WAIT):
                with contextlib.suppress(httpx.RemoteProtocolError):  # ended, or cut as the server stopped
                    async for _ in stream.aiter_bytes():
                        pass
                assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await upstream.stop()
    assert process.stderr is not None
    logs = (await process.stderr.read()).decode()
    assert SANCTIONS_SECRET not in logs
    assert token not in logs
