"""Agents reach tools only through the gateway."""

from __future__ import annotations

import json
import time

import httpx

from accord.agent.settings import AgentSettings
from accord.gateway_client import GatewayClient, mcp_resource, tool_scope
from accord.mesh import MeshRunner
from accord.topology import load_topology

MCP_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def test_agent_settings_have_no_upstream_address() -> None:
    fields = set(AgentSettings.model_fields)
    assert not {f for f in fields if "upstream" in f or "tools" in f}
    tool_ports = {str(s.port) for s in load_topology().of_kind("tools")}
    for agent in load_topology().of_kind("agent"):
        assert not any(port in value for value in agent.env.values() for port in tool_ports)
        assert all("-tools" not in value for value in agent.env.values()), agent.name


async def test_tool_server_refuses_a_call_that_does_not_come_from_the_gateway(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for tools in ("sanctions-tools", "bureau-tools", "ledger-tools"):
            response = await http.post(mesh.url(tools) + "/mcp", json=MCP_LIST, headers=MCP_HEADERS)
            assert response.status_code == 401, tools
            forged = {**MCP_HEADERS, "authorization": "Bearer not-the-gateway-secret-at-all"}
            response = await http.post(mesh.url(tools) + "/mcp", json=MCP_LIST, headers=forged)
            assert response.status_code == 401, tools


async def list_tools(gateway_url: str, token: str | None) -> set[str]:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else None
    http = create_mcp_http_client(headers=headers)
    async with http, Client(streamable_http_client(gateway_url + "/mcp", http_client=http)) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


async def agent_token(mesh: MeshRunner, agent: str, tools: list[str], bindings: dict[str, str]) -> str:
    """A JIT token the way an agent gets one: a grant from the orchestrator's identity, then an exchange."""
    secrets = json.loads((mesh.state_dir / "secrets.json").read_text())
    gateway = mesh.url("gateway")
    scopes = [tool_scope(t) for t in tools]
    async with GatewayClient(gateway, "orchestrator", secrets["orchestrator-client"]) as orchestrator:
        grant = await orchestrator.issue_grant(
            agent, "test", "wf-isolation", agent, scopes, time.time() + 60, bindings
        )
    async with GatewayClient(gateway, agent, secrets[f"{agent}-client"]) as client:
        return (await client.exchange_grant(grant.grant, grant.scopes, mcp_resource(gateway))).token


async def test_the_gateway_federates_upstreams_under_namespaced_names_shown_per_caller(
    mesh: MeshRunner,
) -> None:
    sanctions = await agent_token(mesh, "sanctions-agent", ["sanctions.search"], {})
    ledger_tools = ["ledger.get_account", "ledger.aggregate_by_period", "ledger.aggregate_by_counterparty"]
    ledger = await agent_token(mesh, "ledger-agent", ledger_tools, {"account_id": "ACC-0001"})
    assert await list_tools(mesh.url("gateway"), sanctions) == {"sanctions.search"}
    assert await list_tools(mesh.url("gateway"), ledger) == set(ledger_tools)


async def test_the_gateway_lists_nothing_without_a_token(mesh: MeshRunner) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(mesh.url("gateway") + "/mcp", json=MCP_LIST, headers=MCP_HEADERS)
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]
