"""Stand-ins for the gateway in agent tests: its real OAuth server, with a double for its tool endpoint.

`gateway_double_running` serves the gateway's real authorization server (grants, token exchange) with
`GatewayDouble` as its `/mcp`: a test double for the gateway's TOOL ENDPOINT ONLY, a real MCP server whose
tools carry the gateway's namespaced names (`sanctions.search`, ...) and answer from a small in-test data
set. It records every call it receives, with its bearer, so tests can prove that a rejected request reached
no tool and that each call carried the task's exchanged token. The real gateway and tool servers are
exercised by the mesh tests.

Shared by every stand-in: `GrantTokens` (bearers checked as the stand-in's authorization server would),
`relayed` (a message signed as the gateway's relay delivers it), `send_unary` and `error_of`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.types import Message, SendMessageRequest, Task, TaskState
from fastapi import APIRouter
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AnyHttpUrl
from rapidfuzz import fuzz

from accord.agent import Agent
from accord.agent.testing import RunningAgent, running_agent
from accord.errors import AccordError
from accord.message_signing import sign
from accord.payloads import first_data
from gateway.oauth import OAuthDeps
from tests.oauth_gateway import AGENT_SECRETS, AGENT_TOOLS, OAuthGateway, oauth_gateway
from tests.oauth_server import bound_socket

WAIT_S = 20.0


class GrantTokens:
    """An MCP `TokenVerifier` that accepts exactly the tokens the stand-in's authorization server issued."""

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


def relayed(gateway: OAuthGateway | None, agent: str, message: Message) -> Message:
    """`message` as the gateway's relay delivers it to `agent`: signed with the gateway's key, for `agent`
    (agents accept nothing else). Without a gateway the message goes as it is."""
    if gateway is None:
        return message
    return sign(message, gateway.deps.ring, issuer=gateway.url, caller="orchestrator", callee=agent)


SANCTIONS: list[dict[str, Any]] = [
    {
        "entry_id": "SDN-10001",
        "primary_name": "Tariq Hassan Al-Rashid",
        "aliases": ["Tariq Hasan Rashid"],
        "birth_dates": ["1971-04-12"],
        "countries": ["LB", "SY"],
        "programs": ["SDGT"],
    },
    {
        "entry_id": "SDN-10004",
        "primary_name": "Viktor Ivanovich Petrenkov",
        "aliases": ["Viktor Petrenkov"],
        "birth_dates": ["1962-02-17"],
        "countries": ["RU", "UA"],
        "programs": ["UKRAINE-EO13660"],
    },
]
ADDRESS = {"line1": "9 Mill Lane", "city": "Bristol", "postcode": "BS12 2LE", "country": "GB"}
BUREAU: dict[str, dict[str, Any]] = {
    "APP-0001": {
        "score": 749,
        "tradelines": 6,
        "file_age_months": 143,
        "delinquencies_24m": 0,
        "utilization": 0.35,
        "inquiries_6m": 1,
        "address": ADDRESS,
        "address_reported": "2025-04-06",
    },
    "APP-0004": {
        "score": 634,
        "tradelines": 1,
        "file_age_months": 5,
        "delinquencies_24m": 0,
        "utilization": 0.2,
        "inquiries_6m": 3,
        "address": ADDRESS,
        "address_reported": "2026-05-01",
    },
}
# Applicant ids for which the upstream behind the gateway fails.
BROKEN_UPSTREAM = "APP-0500"
INFLOWS = [3000.0, 3100.0, 2950.0, 3300.0, 2900.0, 3050.0, 3000.0, 3150.0, 2800.0, 3200.0, 3100.0, 3000.0]
OUTFLOWS = [2400.0, 2500.0, 2300.0, 2700.0, 2200.0, 2450.0, 2600.0, 2350.0, 2250.0, 2550.0, 2500.0, 2400.0]
LEDGER: dict[str, dict[str, Any]] = {
    "ACC-100007": {
        "account": {"holder_name": "Harry Okafor", "opened": "2014-02-10", "address": ADDRESS},
        "address_updated": "2021-11-21",
        "periods": [
            {"period": f"2026-{m:02d}", "inflow": i, "outflow": o, "count": 30}
            for m, i, o in zip(range(1, 13), INFLOWS, OUTFLOWS, strict=True)
        ],
        "counterparties": [
            {
                "name": "Acme Payroll",
                "category": "salary",
                "inflow": sum(INFLOWS),
                "outflow": 0.0,
                "count": 12,
            },
            {"name": "Willow Homes", "category": "rent", "inflow": 0.0, "outflow": 12000.0, "count": 12},
            {"name": "Lucky Bets", "category": "gambling", "inflow": 150.0, "outflow": 2100.0, "count": 20},
            {"name": "Spin Palace", "category": "gambling", "inflow": 0.0, "outflow": 600.0, "count": 6},
        ],
    }
}


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict[str, Any]
    authorization: str | None


class GatewayDouble:
    """Stands in for the gateway's `/mcp` endpoint only (see the module docstring)."""

    def __init__(self, auth: AuthSettings | None = None, token_verifier: TokenVerifier | None = None) -> None:
        self.calls: list[ToolCall] = []
        # With `auth`, the MCP SDK's own bearer middleware guards `/mcp` (401/403 with WWW-Authenticate).
        self.mcp = MCPServer("gateway-double", auth=auth, token_verifier=token_verifier)
        self._register_tools()

    def record(self, tool: str, ctx: Context, **arguments: Any) -> None:
        headers = ctx.headers or {}
        self.calls.append(ToolCall(tool, arguments, headers.get("authorization")))

    def _register_tools(self) -> None:
        @self.mcp.tool(name="sanctions.search")
        async def search(
            name: str, ctx: Context, birth_date: str | None = None, country: str | None = None, limit: int = 5
        ) -> dict[str, Any]:
            self.record(
                "sanctions.search", ctx, name=name, birth_date=birth_date, country=country, limit=limit
            )
            matches: list[dict[str, Any]] = []
            for entry in SANCTIONS:
                listed = [entry["primary_name"], *entry["aliases"]]
                scored = [(fuzz.token_sort_ratio(name.casefold(), n.casefold()), n) for n in listed]
                score, matched = max(scored)
                if score >= 50:
                    fields = {k: v for k, v in entry.items() if k != "aliases"}
                    matches.append({**fields, "matched_name": matched, "score": round(score, 1)})
            matches.sort(key=lambda m: m["score"], reverse=True)
            return {"query": name, "matches": matches[:limit]}

        @self.mcp.tool(name="bureau.get_credit_file")
        async def get_credit_file(applicant_id: str, ctx: Context) -> dict[str, Any]:
            self.record("bureau.get_credit_file", ctx, applicant_id=applicant_id)
            if applicant_id == BROKEN_UPSTREAM:
                raise ToolError("bureau upstream is down")
            file = BUREAU.get(applicant_id)
            if file is None:
                return {"applicant_id": applicant_id, "found": False}
            return {"applicant_id": applicant_id, "found": True, **file}

        @self.mcp.tool(name="ledger.get_account")
        async def get_account(account_id: str, ctx: Context) -> dict[str, Any]:
            self.record("ledger.get_account", ctx, account_id=account_id)
            data = LEDGER.get(account_id)
            if data is None:
                return {"account_id": account_id, "found": False}
            return {
                "account_id": account_id,
                "found": True,
                **data["account"],
                "address_updated": data["address_updated"],
            }

        @self.mcp.tool(name="ledger.aggregate_by_period")
        async def aggregate_by_period(account_id: str, ctx: Context, months: int = 12) -> dict[str, Any]:
            self.record("ledger.aggregate_by_period", ctx, account_id=account_id, months=months)
            periods = LEDGER.get(account_id, {}).get("periods", [])
            return {"account_id": account_id, "periods": periods[-months:]}

        @self.mcp.tool(name="ledger.aggregate_by_counterparty")
        async def aggregate_by_counterparty(
            account_id: str, ctx: Context, months: int = 12, top: int = 10
        ) -> dict[str, Any]:
            self.record(
                "ledger.aggregate_by_counterparty", ctx, account_id=account_id, months=months, top=top
            )
            rows = LEDGER.get(account_id, {}).get("counterparties", [])
            return {"account_id": account_id, "counterparties": rows[:top]}


@dataclass(frozen=True)
class StandIn:
    """The gateway stand-in: its real OAuth server (which also signs messages as the relay would, with its
    keys at its JWKS endpoint) and the tool double behind its `/mcp`, at one URL."""

    double: GatewayDouble
    oauth: OAuthGateway

    @property
    def url(self) -> str:
        return self.oauth.url

    async def grant(self, agent: str, tools: Sequence[str] | None = None, task: str = "step-1") -> str:
        """A grant for `agent`'s declared tools (or `tools`), as the orchestrator would send it."""
        _grant_id, grant = await self.oauth.grant(
            agent, AGENT_TOOLS[agent] if tools is None else tools, task=task
        )
        return grant


@contextlib.asynccontextmanager
async def gateway_double_running(
    state_dir: Path,
    protected: bool = False,
    required_scopes: Sequence[str] = (),
    routers: Callable[[OAuthDeps], Sequence[APIRouter]] = lambda _deps: (),
) -> AsyncIterator[StandIn]:
    """The stand-in; `protected` puts bearer verification (and `required_scopes`) in front of `/mcp`;
    `routers` adds more of the gateway (e.g. its grant API)."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    verifier = GrantTokens()
    auth = AuthSettings(
        issuer_url=AnyHttpUrl(url),
        resource_server_url=AnyHttpUrl(url + "/mcp"),
        required_scopes=list(required_scopes),
        validate_token_resource=True,
    )
    double = GatewayDouble(auth, verifier) if protected else GatewayDouble()
    mcp_app = double.mcp.streamable_http_app(stateless_http=True)
    session_manager = double.mcp.session_manager
    async with oauth_gateway(
        state_dir, routers=routers, mcp_app=mcp_app, mcp_lifespan=session_manager.run, sock=sock
    ) as oauth:
        verifier.gateway = oauth
        yield StandIn(double, oauth)


def agent_on(
    stand_in: StandIn, agent: Agent, **settings: Any
) -> contextlib.AbstractAsyncContextManager[RunningAgent]:
    """The agent against the stand-in, with its real client secret so it can exchange its grants."""
    return running_agent(agent, stand_in.url, client_secret=AGENT_SECRETS[agent.name], **settings)


async def send_unary(http: httpx.AsyncClient, base_url: str, transport: str, message: Message) -> Task:
    """One unary SendMessage through the real a2a-sdk client on `transport`: its one event is the task."""
    config = ClientConfig(
        streaming=False,
        supported_protocol_bindings=[transport],
        grpc_channel_factory=grpc.aio.insecure_channel,
        httpx_client=http,
    )
    client = await ClientFactory(config).create_from_url(base_url)
    request = SendMessageRequest(message=message)
    try:
        async with asyncio.timeout(WAIT_S):
            events = [event async for event in client.send_message(request)]
    finally:
        await client.close()
    assert [e.WhichOneof("payload") for e in events] == ["task"]
    return events[0].task


def error_of(task: Task) -> dict[str, Any]:
    assert task.status.state == TaskState.TASK_STATE_FAILED
    body = first_data(task.status.message.parts)
    assert body is not None
    error = body["error"]
    assert isinstance(error, dict)
    return error
