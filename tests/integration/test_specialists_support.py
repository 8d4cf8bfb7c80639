"""The support specialists (triage, network, billing, access) over real A2A, against a gateway stand-in.

The stand-in is the gateway's real authorization server (grants, token exchange) with `ToolsStandIn` as its
`/mcp`: a real MCP server that federates the REAL support and compliance tool servers (built in process from
the committed data set) under the gateway's namespaced names (`support.get_ticket`, ...). Like the gateway,
it verifies each call's bearer and refuses a tool the token has no scope for; it records every call. The
harness here is shared with `test_specialists_compliance.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import jsonschema
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, ClientFactory
from a2a.types import SendMessageRequest, Task, TaskState
from a2a.utils.constants import TransportProtocol
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
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

from access_agent.agent import agent as access_agent
from accord.agent import Agent
from accord.agent.testing import RunningAgent, running_agent
from accord.cards import card_from_dict, skill_schemas
from accord.errors import ERROR_TABLE, AccordError
from accord.gateway_client import GRANTS_ISSUE_SCOPE, tool_scope
from accord.payloads import first_data, skill_request, task_result
from billing_agent.agent import agent as billing_agent
from network_agent.agent import agent as network_agent
from tests.integration.test_agent_a2a import relayed
from tests.unit.test_gateway_client import ORCHESTRATOR_SECRET, OAuthGateway, bound_socket, oauth_gateway
from tests.unit.test_support_tools import InProcessTools, load
from triage_agent.agent import agent as triage_agent

JSONRPC, HTTP_JSON, GRPC = TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC
WAIT_S = 20.0


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


class GrantTokens:
    """A `TokenVerifier` that accepts exactly the tokens the stand-in's authorization server issued."""

    def __init__(self) -> None:
        self.gateway: OAuthGateway | None = None

    async def verify_token(self, token: str) -> AccessToken | None:
        assert self.gateway is not None, "the stand-in has not started"
        try:
            claims = self.gateway.verified(token)
        except AccordError:
            return None
        return AccessToken(
            token=token,
            client_id=claims.client_id,
            scopes=sorted(claims.scopes),
            expires_at=claims.exp,
            resource=claims.aud[0],
        )


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
    config = ClientConfig(
        streaming=False,
        supported_protocol_bindings=[transport],
        grpc_channel_factory=grpc.aio.insecure_channel,
        httpx_client=team.http,
    )
    client = await ClientFactory(config).create_from_url(running.base_url)
    grant = await team.gateway.grant(agent, grant_tools)
    message = relayed(team.gateway.oauth, agent.name, skill_request(skill, data, grant=grant))
    request = SendMessageRequest(message=message)
    try:
        async with asyncio.timeout(WAIT_S):
            events = [event async for event in client.send_message(request)]
    finally:
        await client.close()
    assert [e.WhichOneof("payload") for e in events] == ["task"]
    return events[0].task


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


def error_of(task: Task) -> dict[str, Any]:
    assert task.status.state == TaskState.TASK_STATE_FAILED
    body = first_data(task.status.message.parts)
    assert body is not None
    error = body["error"]
    assert isinstance(error, dict)
    return error


def ticket(scenario: str) -> dict[str, Any]:
    return next(t for t in load("support/tickets.json")["tickets"] if t["scenario"] == scenario)


def resolution_input(scenario: str) -> dict[str, Any]:
    row = ticket(scenario)
    return {"ticket_id": row["ticket_id"], "customer_id": row["customer_id"]}


SUPPORT_AGENTS = (triage_agent, network_agent, billing_agent, access_agent)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Specialists]:
    async with specialists_running(tmp_path_factory.mktemp("support-gateway"), SUPPORT_AGENTS) as team:
        yield team


# ----------------------------------------------------------------------------------------------------------
# ticket-triage


@pytest.mark.parametrize("transport", [JSONRPC, HTTP_JSON, GRPC])
async def test_triage_answers_on_every_transport_with_output_matching_its_card(
    desk: Specialists, transport: str
) -> None:
    row = ticket("network_regional_outage")
    result = await result_of(
        desk, "triage-agent", "ticket-triage", {"ticket_id": row["ticket_id"]}, transport=transport
    )
    assert (result["ticket_id"], result["customer_id"]) == (row["ticket_id"], row["customer_id"])
    assert (result["category"], result["priority"]) == ("network", "high")
    assert result["confidence"] >= 0.9


@pytest.mark.parametrize(
    ("scenario", "category"),
    [
        ("network_device_repeat_failure", "network"),
        ("billing_duplicate_charge", "billing"),
        ("access_account_takeover", "access"),
        ("misleading_suspended_for_non_payment", "billing"),
        ("misleading_outage_as_billing", "network"),
        ("misleading_lockout_as_outage", "access"),
    ],
)
async def test_triage_routes_each_category_by_the_records_even_when_the_words_mislead(
    desk: Specialists, scenario: str, category: str
) -> None:
    result = await result_of(
        desk, "triage-agent", "ticket-triage", {"ticket_id": ticket(scenario)["ticket_id"]}
    )
    assert result["category"] == category
    assert result["confidence"] >= 0.5


@pytest.mark.parametrize("scenario", ["ambiguous_refund_for_slow_internet", "ambiguous_bill_and_connection"])
async def test_an_ambiguous_ticket_is_triaged_with_a_low_confidence(desk: Specialists, scenario: str) -> None:
    result = await result_of(
        desk, "triage-agent", "ticket-triage", {"ticket_id": ticket(scenario)["ticket_id"]}
    )
    assert result["confidence"] < 0.5
    assert result["priority"] == "low"


async def test_triage_reads_the_account_through_its_declared_tools_with_its_tasks_token(
    desk: Specialists,
) -> None:
    before = len(desk.calls)
    await result_of(
        desk, "triage-agent", "ticket-triage", {"ticket_id": ticket("access_locked_out")["ticket_id"]}
    )
    calls = desk.calls[before:]
    assert sorted(c.tool for c in calls) == sorted(declared_tools(triage_agent))
    assert {c.client_id for c in calls} == {"triage-agent"}
    assert all(tool_scope(c.tool) in c.scopes for c in calls)


async def test_an_unknown_ticket_fails_with_not_found(desk: Specialists) -> None:
    error = error_of(await send(desk, "triage-agent", "ticket-triage", {"ticket_id": "TKT-0001"}))
    assert error["reason"] == "not_found"


async def test_a_malformed_ticket_id_is_invalid_input_and_reaches_no_tool(desk: Specialists) -> None:
    before = len(desk.calls)
    error = error_of(await send(desk, "triage-agent", "ticket-triage", {"ticket_id": "TKT 1; drop"}))
    assert error["reason"] == "invalid_input"
    assert len(desk.calls) == before


# ----------------------------------------------------------------------------------------------------------
# the resolvers

RESOLUTIONS = [
    (
        "network-agent",
        "network-diagnosis",
        "network_business_outage",
        ["link_incident", "notify_customer", "priority_restoration"],
        True,
    ),
    ("network-agent", "network-diagnosis", "network_device_offline", ["remote_reboot"], False),
    ("network-agent", "network-diagnosis", "misleading_suspended_for_non_payment", ["reroute"], False),
    ("billing-agent", "billing-resolution", "billing_duplicate_charge", ["refund"], False),
    ("billing-agent", "billing-resolution", "billing_duplicate_large", ["refund_for_approval"], True),
    (
        "billing-agent",
        "billing-resolution",
        "misleading_suspended_for_non_payment",
        ["update_payment_method", "send_payment_link", "restore_service_on_payment"],
        False,
    ),
    (
        "access-agent",
        "access-resolution",
        "access_locked_out",
        ["verify_identity", "unlock_account", "send_password_reset"],
        False,
    ),
    (
        "access-agent",
        "access-resolution",
        "access_account_takeover",
        ["revoke_sessions", "force_password_reset", "reenable_mfa", "notify_security"],
        True,
    ),
    ("access-agent", "access-resolution", "access_mfa_lost_phone", ["verify_identity", "reset_mfa"], False),
]


@pytest.mark.parametrize(("name", "skill", "scenario", "actions", "escalate"), RESOLUTIONS)
async def test_each_resolver_prescribes_the_actions_the_records_call_for(
    desk: Specialists, name: str, skill: str, scenario: str, actions: list[str], escalate: bool
) -> None:
    result = await result_of(desk, name, skill, resolution_input(scenario))
    assert result["ticket_id"] == ticket(scenario)["ticket_id"]
    assert [a["type"] for a in result["actions"]] == actions
    assert result["escalate"] is escalate
    assert 0.5 <= result["confidence"] <= 1


@pytest.mark.parametrize(
    ("name", "skill", "scenario"),
    [
        ("network-agent", "network-diagnosis", "network_no_fault_found"),
        ("access-agent", "access-resolution", "access_no_record"),
    ],
)
async def test_a_resolver_that_finds_nothing_says_so_with_a_low_confidence(
    desk: Specialists, name: str, skill: str, scenario: str
) -> None:
    result = await result_of(desk, name, skill, resolution_input(scenario))
    assert result["escalate"] is False
    assert result["confidence"] < 0.6


@pytest.mark.parametrize("transport", [HTTP_JSON, GRPC])
async def test_a_ticket_sent_with_another_customer_is_refused_as_invalid_input(
    desk: Specialists, transport: str
) -> None:
    data = {
        "ticket_id": ticket("access_locked_out")["ticket_id"],
        "customer_id": ticket("billing_duplicate_charge")["customer_id"],
    }
    task = await send(desk, "access-agent", "access-resolution", data, transport=transport)
    assert error_of(task)["reason"] == "invalid_input"
    assert list(task.artifacts) == []


async def test_a_grant_without_a_needed_tool_fails_the_step_with_insufficient_scope(
    desk: Specialists,
) -> None:
    before = len(desk.calls)
    without = ["support.get_ticket", "support.get_customer", "support.list_invoices"]
    task = await send(
        desk,
        "billing-agent",
        "billing-resolution",
        resolution_input("billing_duplicate_charge"),
        grant_tools=without,
    )
    assert error_of(task)["reason"] == "insufficient_scope"
    refused = [c for c in desk.calls[before:] if tool_scope(c.tool) not in c.scopes]
    assert [c.tool for c in refused] == ["support.list_payments"]
