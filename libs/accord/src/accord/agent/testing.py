"""Running an agent in-process on loopback ports, for tests of agents and of their callers."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from accord.a2a_server import A2AServer
from accord.agent.agent import Agent
from accord.agent.grants import GrantTokens
from accord.agent.registration import Register
from accord.agent.settings import AgentSettings
from accord.service import OwnSignalsServer, server_config
from accord.testing.ports import free_port


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, host: str, port: int, startup_timeout_s: float = 10.0) -> AsyncIterator[None]:
    """Serve an ASGI app with uvicorn on this event loop until the block exits."""
    # Signals belong to the test runner, not to a server it starts.
    server = OwnSignalsServer(server_config(app, host, port))
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{port}")
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"server on {host}:{port} stopped during startup")
        if time.monotonic() > deadline:
            task.cancel()
            raise TimeoutError(f"server on {host}:{port} did not start in {startup_timeout_s}s")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=startup_timeout_s)


@dataclass(frozen=True)
class RunningAgent:
    app: FastAPI
    settings: AgentSettings

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def grpc_address(self) -> str:
        return self.settings.grpc_address(self.settings.grpc_port)


@contextlib.asynccontextmanager
async def running_agent(
    agent: Agent,
    gateway_url: str,
    *,
    host: str = "127.0.0.1",
    grant_tokens: GrantTokens | None = None,
    register: Register | None = None,
    accept_unsigned_messages: bool = False,
    **settings: Any,
) -> AsyncIterator[RunningAgent]:
    """The agent on free HTTP and gRPC ports; extra keyword arguments become `AgentSettings` fields.

    Its OAuth client id is its name; pass `client_secret` for an agent that exchanges grants for real.
    It accepts only messages signed by the gateway at `gateway_url` (see `Agent.create_app`). Its audit
    log goes to a fresh temporary state dir unless `state_dir` is given.
    """
    settings.setdefault("client_id", agent.name)
    settings.setdefault("client_secret", "unset-client-secret")
    with contextlib.ExitStack() as cleanup:
        if "state_dir" not in settings:
            settings["state_dir"] = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="accord-agent-"))
        agent_settings = AgentSettings(
            host=host, port=free_port(host), grpc_port=free_port(host), gateway_url=gateway_url, **settings
        )
        async with _serving_agent(
            agent, agent_settings, grant_tokens, register, accept_unsigned_messages
        ) as running:
            yield running


@contextlib.asynccontextmanager
async def _serving_agent(
    agent: Agent,
    agent_settings: AgentSettings,
    grant_tokens: GrantTokens | None,
    register: Register | None,
    accept_unsigned_messages: bool,
) -> AsyncIterator[RunningAgent]:
    host = agent_settings.host
    app = agent.create_app(
        agent_settings,
        grant_tokens=grant_tokens,
        register=register,
        accept_unsigned_messages=accept_unsigned_messages,
    )
    a2a_server: A2AServer = app.state.a2a_server
    # gRPC starts first and stops last: stopping it also closes the request handler HTTP shares.
    async with (
        a2a_server.grpc_server(host, agent_settings.grpc_port)(),
        serving(app, host, agent_settings.port),
    ):
        yield RunningAgent(app, agent_settings)
