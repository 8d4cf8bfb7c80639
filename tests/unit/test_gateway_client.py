"""`GatewayClient` against the gateway's real authorization server, in process on a free loopback port.

The harness at the top (`oauth_gateway`) is the gateway's OAuth router built the way the gateway builds it
(`build_oauth` + `create_oauth_router`, real SQLite, real keys), optionally with more routers and an MCP
app mounted beside it; the agent SDK and orchestrator tests reuse it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from accord.gateway_client import GRANTS_ISSUE_SCOPE, AccessToken, GatewayClient, IssuedGrant, tool_scope
from tests.oauth_gateway import (
    AGENT_SECRETS,
    AGENT_TOOLS,
    ORCHESTRATOR_SECRET,
    OAuthGateway,
    agent_client,
    bound_socket,
    oauth_gateway,
    refused,
)
from tests.oauth_server import serving

SEARCH = tool_scope("sanctions.search")
JSON = "application/json"


# --- fixtures


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[OAuthGateway]:
    async with oauth_gateway(tmp_path) as running:
        yield running


@pytest.fixture
async def orchestrator_client(gateway: OAuthGateway) -> AsyncIterator[GatewayClient]:
    async with GatewayClient(gateway.url, "orchestrator", ORCHESTRATOR_SECRET) as client:
        yield client


# --- client credentials


async def test_a_client_credentials_token_is_issued_for_the_requested_scope(
    gateway: OAuthGateway, orchestrator_client: GatewayClient
) -> None:
    token = await orchestrator_client.client_credentials_token([GRANTS_ISSUE_SCOPE])
    claims = gateway.deps.access_token_verifier().verify(token.token)
    assert (claims.sub, claims.client_id) == ("orchestrator", "orchestrator")
    assert claims.scopes == token.scopes == {GRANTS_ISSUE_SCOPE}
    assert abs(token.expires_at - claims.exp) <= 2
    assert time.time() < token.expires_at


async def test_the_token_is_reused_until_shortly_before_it_expires(gateway: OAuthGateway) -> None:
    now = [time.time()]
    async with GatewayClient(
        gateway.url, "orchestrator", ORCHESTRATOR_SECRET, refresh_margin_s=10, clock=lambda: now[0]
    ) as client:
        first = await client.client_credentials_token([GRANTS_ISSUE_SCOPE])
        again = await client.client_credentials_token([GRANTS_ISSUE_SCOPE])
        assert again is first
        now[0] = first.expires_at - 11
        assert await client.client_credentials_token([GRANTS_ISSUE_SCOPE]) is first
        now[0] = first.expires_at - 9
        renewed = await client.client_credentials_token([GRANTS_ISSUE_SCOPE])
    assert renewed.token != first.token
    assert client.token_requests == 2
    assert len(await gateway.token_issuances()) == 2


async def test_concurrent_callers_share_one_token_request(
    gateway: OAuthGateway, orchestrator_client: GatewayClient
) -> None:
    tokens = await asyncio.gather(
        *(orchestrator_client.client_credentials_token([GRANTS_ISSUE_SCOPE]) for _ in range(20))
    )
    assert len({token.token for token in tokens}) == 1
    assert orchestrator_client.token_requests == 1
    assert len(await gateway.token_issuances()) == 1


async def test_a_wrong_client_secret_is_unauthenticated_and_nothing_is_cached(gateway: OAuthGateway) -> None:
    async with GatewayClient(gateway.url, "orchestrator", "not-the-secret-0123456789") as client:
        error = await refused(client.client_credentials_token([GRANTS_ISSUE_SCOPE]))
        again = await refused(client.client_credentials_token([GRANTS_ISSUE_SCOPE]))
    assert error.reason == again.reason == "unauthenticated"
    assert error.context == {"oauth_error": "invalid_client"}
    assert client.token_requests == 2
    assert await gateway.token_issuances() == []


async def test_a_scope_beyond_the_client_registration_is_insufficient_scope(
    orchestrator_client: GatewayClient,
) -> None:
    foreign = await refused(orchestrator_client.client_credentials_token([SEARCH]))
    assert foreign.reason == "insufficient_scope"
    assert foreign.context == {"oauth_error": "invalid_scope"}
    # The server issues the registered part of a wider request; a token short of what was asked is refused.
    partial = await refused(orchestrator_client.client_credentials_token([GRANTS_ISSUE_SCOPE, SEARCH]))
    assert partial.reason == "insufficient_scope"
    assert partial.context == {"missing_scopes": [SEARCH]}
    assert orchestrator_client.token_requests == 2


async def test_an_unreachable_gateway_is_upstream_unavailable() -> None:
    sock = bound_socket()  # bound, never listening: connections are refused
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with GatewayClient(url, "orchestrator", ORCHESTRATOR_SECRET, timeout_s=2) as client:
            token_error = await refused(client.client_credentials_token([GRANTS_ISSUE_SCOPE]))
            grant_error = await refused(
                client.issue_grant("ledger-agent", "transaction-profile", "wf", "t", [], time.time() + 5)
            )
    finally:
        sock.close()
    assert token_error.reason == grant_error.reason == "upstream_unavailable"


@asynccontextmanager
async def misbehaving_gateway(status: int, body: str, content_type: str) -> AsyncIterator[str]:
    app = FastAPI()

    @app.post("/oauth/token")
    async def token() -> PlainTextResponse:
        return PlainTextResponse(body, status_code=status, media_type=content_type)

    sock = bound_socket()
    async with serving(app, sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "reason"),
    [
        (200, "<html>login</html>", "text/html", "upstream_unavailable"),
        (
            200,
            '{"access_token": "tok-secret-1", "token_type": "mac", "expires_in": 60}',
            "application/json",
            None,
        ),
        (200, '{"access_token": "tok-secret-1", "token_type": "Bearer"}', "application/json", None),
        (503, "busy", "text/plain", "upstream_unavailable"),
        (429, '{"error": "slow_down"}', "application/json", "rate_limited"),
        (400, '{"error": "invalid_request"}', "application/json", "invalid_input"),
    ],
)
async def test_malformed_or_failed_token_responses_map_to_precise_reasons(
    status: int, body: str, content_type: str, reason: str | None
) -> None:
    async with (
        misbehaving_gateway(status, body, content_type) as url,
        GatewayClient(url, "orchestrator", ORCHESTRATOR_SECRET) as client,
    ):
        error = await refused(client.client_credentials_token([GRANTS_ISSUE_SCOPE]))
    assert error.reason == (reason or "upstream_unavailable")
    assert "tok-secret-1" not in str(error)


# --- token exchange


async def test_a_grant_is_exchanged_for_a_token_to_the_mcp_resource_with_the_delegation_chain(
    gateway: OAuthGateway,
) -> None:
    grant_id, grant = await gateway.grant(
        "ledger-agent", AGENT_TOOLS["ledger-agent"], wf="wf-42", task="ledger"
    )
    wanted = {tool_scope("ledger.get_account"), tool_scope("ledger.aggregate_by_period")}
    async with agent_client(gateway, "ledger-agent") as client:
        token = await client.exchange_grant(grant, wanted, gateway.mcp_url)
    claims = gateway.verified(token.token)
    assert token.scopes == claims.scopes == wanted
    assert claims.aud == (gateway.mcp_url,)
    assert claims.client_id == "ledger-agent"
    assert (claims.wf, claims.task, claims.grant_id) == ("wf-42", "ledger", grant_id)
    assert claims.act_chain == ("ledger-agent", "orchestrator")
    assert token.expires_at <= time.time() + 61


async def test_an_exchange_for_more_than_the_grant_is_insufficient_scope(gateway: OAuthGateway) -> None:
    _, grant = await gateway.grant("ledger-agent", ["ledger.get_account"])
    async with agent_client(gateway, "ledger-agent") as client:
        error = await refused(
            client.exchange_grant(
                grant,
                [tool_scope("ledger.get_account"), tool_scope("ledger.aggregate_by_period")],
                gateway.mcp_url,
            )
        )
    assert error.reason == "insufficient_scope"
    assert error.context == {"oauth_error": "invalid_scope"}


async def test_an_exchange_for_another_resource_is_policy_denied(gateway: OAuthGateway) -> None:
    _, grant = await gateway.grant("sanctions-agent", ["sanctions.search"])
    async with agent_client(gateway, "sanctions-agent") as client:
        error = await refused(client.exchange_grant(grant, [SEARCH], gateway.url + "/elsewhere"))
    assert error.reason == "policy_denied"
    assert error.context == {"oauth_error": "invalid_target"}


async def test_a_revoked_grant_or_another_agents_grant_is_an_invalid_token(gateway: OAuthGateway) -> None:
    grant_id, grant = await gateway.grant("sanctions-agent", ["sanctions.search"])
    async with agent_client(gateway, "bureau-agent") as thief:
        stolen = await refused(thief.exchange_grant(grant, [SEARCH], gateway.mcp_url))
    await gateway.deps.grants.revoke(grant_id)
    async with agent_client(gateway, "sanctions-agent") as owner:
        revoked = await refused(owner.exchange_grant(grant, [SEARCH], gateway.mcp_url))
    assert stolen.reason == revoked.reason == "invalid_token"
    assert stolen.context == revoked.context == {"oauth_error": "invalid_grant"}
    assert "revoked" in revoked.detail


async def test_no_token_grant_or_secret_reaches_a_repr_or_the_logs(
    gateway: OAuthGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, grant = await gateway.grant("sanctions-agent", ["sanctions.search"])
    client = agent_client(gateway, "sanctions-agent")
    async with client:
        token = await client.exchange_grant(grant, [SEARCH], gateway.mcp_url)
        await refused(client.exchange_grant(grant, [tool_scope("bureau.get_credit_file")], gateway.mcp_url))
    issued = IssuedGrant("g-1", grant, (SEARCH,), (), time.time() + 60)
    shown = " ".join([repr(client), repr(token), repr(issued), caplog.text])
    for secret in (token.token, grant, AGENT_SECRETS["sanctions-agent"]):
        assert secret not in shown
    assert isinstance(token, AccessToken)


BELLS = "\\u0007" * 500


async def test_an_error_response_detail_is_sanitized_and_bounded() -> None:
    async with (
        misbehaving_gateway(
            400, '{"error": "invalid_grant", "error_description": "' + BELLS + '"}', JSON
        ) as url,
        GatewayClient(url, "orchestrator", ORCHESTRATOR_SECRET) as client,
    ):
        error = await refused(client.client_credentials_token([GRANTS_ISSUE_SCOPE]))
    assert error.reason == "invalid_token"
    assert "\x07" not in error.detail
    assert len(error.detail) < 300


async def test_an_injected_http_client_is_used_and_left_open(gateway: OAuthGateway) -> None:
    async with httpx.AsyncClient() as http:
        client = GatewayClient(gateway.url, "orchestrator", ORCHESTRATOR_SECRET, http=http)
        await client.client_credentials_token([GRANTS_ISSUE_SCOPE])
        await client.aclose()
        assert not http.is_closed
        response = await http.get(gateway.url + "/healthz")
    assert response.status_code == 200
