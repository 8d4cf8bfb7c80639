"""A gateway stand-in for specialists whose tools are the real support and compliance tool servers.

The stand-in is the gateway's real authorization server (grants, token exchange) with `ToolsStandIn` as its
`/mcp`: a real MCP server that federates the REAL support and compliance tool servers (built in process from
the committed data set) under the gateway's namespaced names (`support.get_ticket`, ...). Like the gateway,
it verifies each call's bearer and refuses a tool the token has no scope for; it records every call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from a2a.types import Task, TaskState
from a2a.utils.constants import TransportProtocol
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
)
from pydantic import AnyHttpUrl

from accord.agent import Agent
from accord.agent.testing import RunningAgent, running_agent
from accord.cards import card_from_dict, skill_schemas
from accord.errors import ERROR_TABLE
from accord.gateway_client import GRANTS_ISSUE_SCOPE, tool_scope
from accord.payloads import first_data, skill_request, task_result
from tests.gateway_stand_in import WAIT_S, GrantTokens, relayed, send_unary
from tests.in_process_tools import InProcessTools
from tests.oauth_gateway import ORCHESTRATOR_SECRET, OAuthGateway, oauth_gateway
from tests.oauth_server import bound_socket

JSONRPC, HTTP_JSON, GRPC = TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC


def declared_tools(agent: Agent) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tool for skill in agent.skills.values() for tool in skill.tools))


def client_secret(agent: Agent) -> str:
    return f"{agent.name}-secret-0123456789"


def specialist_clients(agents: Sequence[Agent]) -> list[dict[str, Any]]:
    """The orchestrator and `agents` as the gateway registers them; grants may hold each agent's tools."""
    return [
        {
            "client_id": "orchestrator",
            "kind": "orchestrator",
            "secret": ORCHESTRATOR_SECRET,
            "scopes": [GRANTS_ISSUE_SCOPE],
        },
        *(
            {
                "client_id": agent.name,
                "kind": "agent",
                "secret": client_secret(agent),
                "grant_scopes": [tool_scope(tool) for tool in declared_tools(agent)],
            }
            for agent in agents
        ),
    ]


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict[str, Any]
    client_id: str | None
    scopes: frozenset[str]


class ToolsStandIn:
    """Stands in for the gateway's `/mcp` only (see the module docstring)."""

    def __init__(self, upstreams: dict[str, MCPServer]) -> None:
        self.upstreams = upstreams
        self.calls: list[ToolCall] = []
        self.server: Server[Any] = Server(
            "gateway-stand-in", on_list_tools=self._list, on_call_tool=self._call
        )

    async def _list(
        self, _ctx: ServerRequestContext[Any], _params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        tools = [
            tool.model_copy(update={"name": f"{name}.{tool.name}"})
            for name, upstream in self.upstreams.items()
            for tool in await upstream.list_tools()
        ]
        return ListToolsResult(tools=tools)

    async def _call(self, _ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        token = get_access_token()
        scopes = frozenset(token.scopes if token else ())
        arguments = dict(params.arguments or {})
        self.calls.append(ToolCall(params.name, arguments, token.client_id if token else None, scopes))
        if tool_scope(params.name) not in scopes:
            kind = ERROR_TABLE["insufficient_scope"]
            raise MCPError(kind.jsonrpc_code, "insufficient scope", {"reason": kind.reason})
        upstream, _, tool = params.name.partition(".")
        if upstream not in self.upstreams:
            return CallToolResult(content=[TextContent(type="text", text="unknown tool")], is_error=True)
        try:
            result = await self.upstreams[upstream].call_tool(tool, arguments)
        except ToolError as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        assert isinstance(result, CallToolResult)
        return result


@dataclass(frozen=True)
class StandIn:
    tools: ToolsStandIn
    oauth: OAuthGateway

    @property
    def url(self) -> str:
        return self.oauth.url

    async def grant(self, agent: Agent, tools: Sequence[str] | None = None) -> str:
        """A task grant for `agent`'s declared tools (or `tools`), as the orchestrator's dispatch gets it."""
        _grant_id, grant = await self.oauth.grant(
            agent.name, declared_tools(agent) if tools is None else tools
        )
        return grant


@contextlib.asynccontextmanager
async def stand_in_running(state_dir: Path, agents: Sequence[Agent]) -> AsyncIterator[StandIn]:
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    tools = ToolsStandIn(InProcessTools().servers)
    verifier = GrantTokens()
    auth = AuthSettings(
        issuer_url=AnyHttpUrl(url), resource_server_url=AnyHttpUrl(url + "/mcp"), validate_token_resource=True
    )
    mcp_app = tools.server.streamable_http_app(stateless_http=True, auth=auth, token_verifier=verifier)
    async with oauth_gateway(
        state_dir,
        clients=specialist_clients(agents),
        mcp_app=mcp_app,
        mcp_lifespan=tools.server.session_manager.run,
        sock=sock,
    ) as oauth:
        verifier.gateway = oauth
        yield StandIn(tools, oauth)


@dataclass(frozen=True)
class Specialists:
    gateway: StandIn
    agents: dict[str, tuple[Agent, RunningAgent]]
    # One HTTP client for every A2A client: building an httpx client costs ~0.1 s.
    http: httpx.AsyncClient
    # Output schemas from the served cards, by (agent, skill): fetched once per module.
    output_schemas: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def calls(self) -> list[ToolCall]:
        return self.gateway.tools.calls


@contextlib.asynccontextmanager
async def specialists_running(state_dir: Path, agents: Sequence[Agent]) -> AsyncIterator[Specialists]:
    async with contextlib.AsyncExitStack() as stack:
        gateway = await stack.enter_async_context(stand_in_running(state_dir, agents))
        running = {}
        for agent in agents:
            served = running_agent(agent, gateway.url, client_secret=client_secret(agent))
            running[agent.name] = (agent, await stack.enter_async_context(served))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=WAIT_S))
        yield Specialists(gateway, running, http)


async def send(
    team: Specialists,
    name: str,
    skill: str,
    data: dict[str, Any],
    transport: str = JSONRPC,
    grant_tools: Sequence[str] | None = None,
) -> Task:
    """One unary SendMessage through the real a2a-sdk client, with a task grant for the agent's tools."""
    agent, running = team.agents[name]
    grant = await team.gateway.grant(agent, grant_tools)
    message = relayed(team.gateway.oauth, agent.name, skill_request(skill, data, grant=grant))
    return await send_unary(team.http, running.base_url, transport, message)


async def result_of(
    team: Specialists, name: str, skill: str, data: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """The completed task's result, checked against the output schema the agent's card declares."""
    task = await send(team, name, skill, data, **kwargs)
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, first_data(task.status.message.parts)
    assert [a.name for a in task.artifacts] == ["result"]
    result = task_result(task)
    assert result is not None
    jsonschema.validate(result, await served_output_schema(team, name, skill))
    return result


async def served_output_schema(team: Specialists, name: str, skill: str) -> dict[str, Any]:
    if (name, skill) not in team.output_schemas:
        card = await team.http.get(team.agents[name][1].base_url + "/.well-known/agent-card.json")
        team.output_schemas[name, skill] = skill_schemas(card_from_dict(card.json()))[skill].output_schema
    return team.output_schemas[name, skill]
