"""Upstream MCP tool servers as real `python -m <package>` processes on free loopback ports, for tests.

Each server gets the gateway secret, the data set and its own state dir; `tool_servers` starts a set of
them, waits until every one is ready and stops them all (SIGTERM, then SIGKILL whatever hangs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from accord.testing.ports import free_port
from accord.testing.readiness import wait_until_ready
from accord.topology import repo_root

SECRET = "tools-gateway-secret-for-tests-0123456789"
DATA = repo_root() / "data"
STARTUP_DEADLINE_S = 45.0
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@dataclass
class ToolServer:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def tool_servers(
    tmp: Path, packages: Mapping[str, tuple[str, Mapping[str, str]]]
) -> Iterator[dict[str, ToolServer]]:
    """The servers named in `packages` (name -> (package, extra environment)), all ready."""
    launched: dict[str, ToolServer] = {}
    try:
        for name, (package, extra_env) in packages.items():
            launched[name] = start_tool_server(name, package, tmp, extra_env)
        wait_ready(list(launched.values()))
        yield launched
    finally:
        stop(list(launched.values()))


def start_tool_server(name: str, package: str, tmp: Path, extra_env: Mapping[str, str]) -> ToolServer:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "ACCORD_HOST": "127.0.0.1",
        "ACCORD_PORT": str(port),
        "ACCORD_TOOLS_GATEWAY_SECRET": SECRET,
        "ACCORD_DATA_DIR": str(DATA),
        "ACCORD_STATE_DIR": str(tmp / "state"),
        **extra_env,
    }
    log = tmp / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", package],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ToolServer(name, f"http://127.0.0.1:{port}", process, log)


def wait_ready(servers: list[ToolServer]) -> None:
    # They start together: waiting for each in turn takes as long as the slowest.
    for server in servers:
        wait_until_ready(server.url, server.process, STARTUP_DEADLINE_S, server.log)


def stop(servers: list[ToolServer]) -> None:
    """SIGTERM all first (they shut down in parallel), then wait; SIGKILL whatever hangs."""
    running = [s for s in servers if s.process.poll() is None]
    for server in running:
        server.process.terminate()
    for server in running:
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


@asynccontextmanager
async def connect(server: ToolServer, secret: str = SECRET, **headers: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}", **headers}, timeout=15)
    async with http, Client(streamable_http_client(server.url + "/mcp", http_client=http)) as client:
        yield client


async def call(server: ToolServer, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    async with connect(server) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


async def call_error(server: ToolServer, tool: str, arguments: dict[str, Any]) -> str:
    async with connect(server) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    return " ".join(getattr(block, "text", "") for block in result.content)


def tool_calls_counted(server: ToolServer) -> float:
    text = httpx2.get(server.url + "/metrics", timeout=5).text
    pattern = r"^accord_tool_calls_total\{[^}]*\} ([0-9.e+]+)$"
    return sum(float(value) for value in re.findall(pattern, text, flags=re.M))


async def assert_call_unauthenticated(
    server: ToolServer, tool: str, arguments: dict[str, Any], authorization: str | None
) -> None:
    """A raw `tools/call` with this Authorization header gets 401 `unauthenticated`, and no tool runs."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    headers = dict(MCP_HEADERS, **({"authorization": authorization} if authorization else {}))
    before = tool_calls_counted(server)
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(server.url + "/mcp", json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["reason"] == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert tool_calls_counted(server) == before
