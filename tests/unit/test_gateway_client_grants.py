"""`GatewayClient`'s grant calls against the gateway's real grant API (`gateway.grant_api`) and OAuth
server, in process: issue, drop scopes beyond the policy, revoke, and every refusal by its reason."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from fastapi import APIRouter

from accord.errors import AccordError
from accord.gateway_client import GRANTS_ISSUE_SCOPE, GatewayClient, IssuedGrant, tool_scope
from gateway.grant_api import grants_router
from gateway.oauth import OAuthDeps
from tests.oauth_gateway import (
    AGENT_SECRETS,
    AGENT_TOOLS,
    ORCHESTRATOR_SECRET,
    OAuthGateway,
    agent_client,
    mesh_clients,
    oauth_gateway,
    refused,
)
from tests.oauth_server import bound_socket

LEDGER_SCOPES = [tool_scope(tool) for tool in AGENT_TOOLS["ledger-agent"]]
BINDINGS = {"account_id": "ACC-100007"}


def grant_api(deps: OAuthDeps) -> Sequence[APIRouter]:
    """The grant API as the gateway mounts it: its own tokens, addressed to its base URL or its MCP URL."""
    config = deps.config
    verifiers = [deps.access_token_verifier(audience=a) for a in (config.issuer, config.mcp_resource)]
    return [grants_router(deps.grants, verifiers, deps.audit, config.mcp_resource)]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[OAuthGateway]:
    # The ledger agent's policy allows two of its three tools, so one requested scope is always dropped.
    policy = {**AGENT_TOOLS, "ledger-agent": AGENT_TOOLS["ledger-agent"][:2]}
    async with oauth_gateway(tmp_path, mesh_clients(policy), routers=grant_api) as running:
        yield running


@pytest.fixture
async def orchestrator(gateway: OAuthGateway) -> AsyncIterator[GatewayClient]:
    async with GatewayClient(gateway.url, "orchestrator", ORCHESTRATOR_SECRET) as client:
        yield client


async def issue(
    client: GatewayClient,
    agent: str = "ledger-agent",
    scopes: Sequence[str] = LEDGER_SCOPES,
    deadline_s: float = 30,
    task: str = "ledger",
) -> IssuedGrant:
    return await client.issue_grant(
        agent=agent,
        skill="transaction-profile",
        wf="run-1",
        task=task,
        scopes=scopes,
        deadline=time.time() + deadline_s,
        bindings=BINDINGS,
    )


async def test_a_grant_is_issued_for_the_scopes_the_policy_allows_and_the_rest_is_reported_dropped(
    gateway: OAuthGateway, orchestrator: GatewayClient
) -> None:
    started = time.time()
    issued = await issue(orchestrator)
    assert issued.scopes == tuple(sorted(LEDGER_SCOPES[:2]))
    assert issued.dropped_scopes == (LEDGER_SCOPES[2],)
    assert started < issued.expires_at <= started + 31
    stored = await gateway.deps.grants.get(issued.grant_id)
    assert stored is not None
    assert (stored.agent, stored.delegated_by) == ("ledger-agent", "orchestrator")
    assert (stored.wf, stored.task) == ("run-1", "ledger")
    # The agent can exchange it for exactly what it holds, bindings included.
    async with agent_client(gateway, "ledger-agent") as ledger:
        token = await ledger.exchange_grant(issued.grant, issued.scopes, gateway.mcp_url)
    claims = gateway.verified(token.token)
    assert claims.grant_id == issued.grant_id
    assert dict(claims.bindings) == BINDINGS


async def test_the_grant_api_token_is_addressed_to_the_gateway_and_reused(
    gateway: OAuthGateway, orchestrator: GatewayClient
) -> None:
    await issue(orchestrator)
    await issue(orchestrator, task="again")
    token = await orchestrator.client_credentials_token([GRANTS_ISSUE_SCOPE], gateway.url)
    claims = gateway.deps.access_token_verifier(audience=gateway.url).verify(token.token)
    assert claims.scopes == {GRANTS_ISSUE_SCOPE}
    assert orchestrator.token_requests == 1, "one token for every grant call"


async def test_a_revoked_grant_can_no_longer_be_exchanged(
    gateway: OAuthGateway, orchestrator: GatewayClient
) -> None:
    issued = await issue(orchestrator)
    await orchestrator.revoke_grant(issued.grant_id)
    async with agent_client(gateway, "ledger-agent") as ledger:
        error = await refused(ledger.exchange_grant(issued.grant, issued.scopes, gateway.mcp_url))
    assert error.reason == "invalid_token"
    stored = await gateway.deps.grants.get(issued.grant_id)
    assert stored is not None
    assert stored.revoked


async def test_revoking_an_unknown_grant_is_not_found(orchestrator: GatewayClient) -> None:
    error = await refused(orchestrator.revoke_grant("no-such-grant"))
    assert error.reason == "not_found"


async def test_a_grant_the_policy_allows_nothing_of_is_policy_denied_and_stores_nothing(
    gateway: OAuthGateway, orchestrator: GatewayClient
) -> None:
    error = await refused(issue(orchestrator, scopes=[tool_scope("bureau.get_credit_file")]))
    assert error.reason == "policy_denied"
    assert await gateway.deps.grants.revoke_task("run-1", "ledger") == []


async def test_an_unknown_agent_is_policy_denied(orchestrator: GatewayClient) -> None:
    error = await refused(issue(orchestrator, agent="mallory-agent"))
    assert error.reason == "policy_denied"


async def test_a_past_deadline_is_invalid_input(orchestrator: GatewayClient) -> None:
    error = await refused(issue(orchestrator, deadline_s=-1))
    assert error.reason == "invalid_input"


async def test_an_agent_cannot_issue_grants(gateway: OAuthGateway) -> None:
    # Agents hold no grants:issue scope: the token request itself is refused.
    async with GatewayClient(gateway.url, "ledger-agent", AGENT_SECRETS["ledger-agent"]) as agent:
        error = await refused(issue(agent))
    assert error.reason == "insufficient_scope"


async def test_wrong_orchestrator_credentials_are_unauthenticated(gateway: OAuthGateway) -> None:
    async with GatewayClient(gateway.url, "orchestrator", "wrong-secret-0123456789abc") as client:
        error = await refused(issue(client))
    assert error.reason == "unauthenticated"
    assert await gateway.deps.grants.revoke_task("run-1", "ledger") == []


async def test_a_token_the_gateway_stopped_accepting_is_replaced_once(tmp_path: Path) -> None:
    # The gateway restarts on the same address with new keys: the cached token no longer verifies there.
    sock = bound_socket()
    port = sock.getsockname()[1]
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    async with GatewayClient(f"http://127.0.0.1:{port}", "orchestrator", ORCHESTRATOR_SECRET) as client:
        async with oauth_gateway(before, routers=grant_api, sock=sock):
            await issue(client)
        async with oauth_gateway(after, routers=grant_api, sock=bound_socket(port)):
            await issue(client)
    assert client.token_requests == 2


async def test_grant_calls_never_put_the_token_or_the_grant_in_an_error(
    gateway: OAuthGateway, orchestrator: GatewayClient
) -> None:
    issued = await issue(orchestrator, task="other")
    await orchestrator.revoke_grant(issued.grant_id)
    token = await orchestrator.client_credentials_token([GRANTS_ISSUE_SCOPE], gateway.url)
    error: AccordError = await refused(orchestrator.revoke_grant("missing"))
    assert token.token not in str(error)
    assert issued.grant not in repr(issued)
