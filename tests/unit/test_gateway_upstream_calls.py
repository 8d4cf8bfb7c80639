"""The gateway's lean upstream call path against a real loopback socket server that answers with chosen
bytes: JSON and SSE (chunked) answers, keep-alive reuse, a stale connection, refusals and contract checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.http_pool import HttpError, KeepAlivePool
from gateway.upstream_calls import CallRefused, CallTransportError, UpstreamCaller

SCHEMA = {"type": "object", "properties": {"found": {"type": "boolean"}}, "required": ["found"]}
Answer = Callable[[dict[str, Any], dict[str, str]], bytes]


def json_answer(result: dict[str, Any], status: str = "200 OK") -> Answer:
    def answer(request: dict[str, Any], _headers: dict[str, str]) -> bytes:
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], **result}).encode()
        head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        return head.encode() + body

    return answer


def sse_answer(result: dict[str, Any]) -> Answer:
    def answer(request: dict[str, Any], _headers: dict[str, str]) -> bytes:
        progress = (
            b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\r\n\r\n'
        )
        final = (
            b"event: message\r\ndata: "
            + json.dumps({"jsonrpc": "2.0", "id": request["id"], **result}).encode()
        )
        chunks = [progress, final + b"\r\n\r\n"]
        body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
        return (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + body
        )

    return answer


class Server:
    """Reads whole requests, records them, and writes whatever `answer` returns."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.connections = 0
        self.close_after_each = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")[1:]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines if line)
                }
                request = json.loads(await reader.readexactly(int(headers["content-length"])))
                self.requests.append((headers, request))
                writer.write(self.answer(request, headers))
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[Server, str]]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/mcp"
    finally:
        listener.close()
        await listener.wait_closed()


OK = {"result": {"content": [], "structuredContent": {"found": True}, "isError": False}}


async def test_a_call_is_one_self_contained_2026_post_with_only_the_gateways_credential() -> None:
    async with serving(json_answer(OK)) as (server, url):
        caller = UpstreamCaller(url, SecretStr("gateway-secret-0123456789"), timeout=5)
        try:
            result = await caller.call("get_account", {"account_id": "A"}, SCHEMA)
            await caller.call("get_account", {"account_id": "B"}, SCHEMA)
        finally:
            await caller.aclose()
    assert result.structured_content == {"found": True}
    headers, request = server.requests[0]
    assert headers["authorization"] == "Bearer gateway-secret-0123456789"
    assert (headers["mcp-protocol-version"], headers["mcp-method"], headers["mcp-name"]) == (
        "2026-07-28",
        "tools/call",
        "get_account",
    )
    assert request["params"]["arguments"] == {"account_id": "A"}
    assert request["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert server.connections == 1  # kept alive and reused


async def test_an_sse_answer_yields_the_response_that_ends_the_stream() -> None:
    async with serving(sse_answer(OK)) as (_, url):
        caller = UpstreamCaller(url, SecretStr("s" * 20), timeout=5)
        try:
            result = await caller.call("get_account", {}, SCHEMA)
        finally:
            await caller.aclose()
    assert result.structured_content == {"found": True}


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (json_answer({"error": {"code": -32602, "message": "no such tool"}}), "refused"),
        (json_answer({"result": {"content": [], "structuredContent": {"found": "yes"}}}), "contract"),
        (json_answer({"result": {"content": []}}), "contract"),
        (json_answer({"result": {"content": "not a list"}}), "contract"),
    ],
    ids=["jsonrpc-error", "schema-mismatch", "no-structured-content", "malformed-result"],
)
async def test_answers_that_break_the_tool_contract_are_refused(answer: Answer, kind: str) -> None:
    async with serving(answer) as (_, url):
        caller = UpstreamCaller(url, SecretStr("s" * 20), timeout=5)
        try:
            with pytest.raises(CallRefused) as refused:
                await caller.call("get_account", {}, SCHEMA)
        finally:
            await caller.aclose()
    assert refused.value.kind == kind


async def test_an_http_refusal_or_a_dead_upstream_is_a_transport_error() -> None:
    async with serving(json_answer({}, status="401 Unauthorized")) as (_, url):
        with pytest.raises(CallTransportError):
            await UpstreamCaller(url, SecretStr("s" * 20), timeout=5).call("x", {}, None)
    with pytest.raises(CallTransportError):
        await UpstreamCaller(url, SecretStr("s" * 20), timeout=2).call("x", {}, None)


async def test_a_connection_the_server_closed_while_idle_is_replaced_transparently() -> None:
    async with serving(json_answer(OK)) as (server, url):
        server.close_after_each = True
        pool = KeepAlivePool(url, timeout=5)
        try:
            for _ in range(3):
                response = await pool.post(b'{"id": 1}', {"content-type": "application/json"})
                assert response.status == 200
        finally:
            await pool.aclose()
    assert server.connections == 3


async def test_a_truncated_answer_is_an_error() -> None:
    def truncated(_request: dict[str, Any], _headers: dict[str, str]) -> bytes:
        return b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"

    async with serving(truncated) as (server, url):
        server.close_after_each = True
        pool = KeepAlivePool(url, timeout=5)
        with pytest.raises(HttpError):
            await pool.post(b'{"id": 1}', {})
        await pool.aclose()
