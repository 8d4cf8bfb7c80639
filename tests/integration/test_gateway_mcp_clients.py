"""Outside callers of the gateway's `/mcp`, on real processes: the MCP SDK's own OAuth client-credentials
provider (discovery through RFC 9728 and RFC 8414, no custom code), and tokens of another trusted OIDC
issuer, verified through the JWKS URL the gateway's configuration names for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from accord.keys import KeyRing
from tests.gateway_mesh import (
    ACCOUNT,
    GET_ACCOUNT,
    SEARCH,
    GatewayMesh,
    assert_rejected,
    deploy_policy,
    gateway_mesh,
    new_trace,
)
from tests.oauth_server import MemoryTokenStorage, bound_socket, serving, url_of

PARTNER = "partner-app"
PARTNER_SECRET = "partner-app-secret-0123456789"
PORTAL = "partner-portal"  # a client of the other issuer


@dataclass
class OtherIssuer:
    url: str
    ring: KeyRing

    @property
    def jwks_url(self) -> str:
        return self.url + "/jwks"


@dataclass
class World:
    mesh: GatewayMesh
    other: OtherIssuer


def policy(other_issuer: str) -> dict[str, Any]:
    document = deploy_policy()
    document["clients"][PARTNER] = {"tools": [{"tool": "sanctions.search", "id": "partner-screening"}]}
    document["clients"][PORTAL] = {
        "issuer": other_issuer,
        "tools": [
            {"tool": "sanctions.search", "id": "portal-screening"},
            {"tool": "ledger.get_account", "arguments": {"account_id": {"equals_binding": "account_id"}}},
        ],
    }
    return document


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    sock = bound_socket()
    other = OtherIssuer(url_of(sock), KeyRing.generate("RS256"))
    jwks = FastAPI()

    @jwks.get("/jwks")
    async def published() -> dict[str, Any]:
        document: dict[str, Any] = other.ring.public_jwks()
        return document

    trusted = json.dumps({other.url: other.jwks_url})
    async with (
        serving(jwks, sock),
        gateway_mesh(
            tmp_path_factory.mktemp("gw-mcp-clients"),
            port_offset=22400,
            policy=policy(other.url),
            extra_env={"gateway": {"ACCORD_GATEWAY_TRUSTED_ISSUERS": trusted}},
        ) as mesh,
    ):
        registered = await mesh.http.post(
            mesh.url + "/admin/clients",
            json={"client_id": PARTNER, "kind": "external", "secret": PARTNER_SECRET, "scopes": [SEARCH]},
            headers={"Authorization": f"Bearer {mesh.admin_secret}"},
        )
        assert registered.status_code == 201, registered.text
        yield World(mesh, other)


async def test_the_mcp_sdk_client_credentials_provider_discovers_the_gateway_and_calls_a_permitted_tool(
    world: World,
) -> None:
    mesh = world.mesh
    provider = ClientCredentialsOAuthProvider(
        server_url=mesh.mcp_url,
        storage=MemoryTokenStorage(),
        client_id=PARTNER,
        client_secret=PARTNER_SECRET,
        issuer=mesh.url,
    )
    before = await mesh.upstream_tool_calls()
    http = create_mcp_http_client(auth=provider)
    async with http, Client(streamable_http_client(mesh.mcp_url, http_client=http)) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        first = await client.call_tool("sanctions.search", {"name": "Tariq Hassan Al-Rashid"})
        second = await client.call_tool("sanctions.search", {"name": "Viktor Petrenko"})

    assert names == ["sanctions.search"]
    assert first.is_error is False
    assert first.structured_content is not None
    assert first.structured_content["matches"][0]["entry_id"] == "SDN-10001"
    assert second.is_error is False
    assert await mesh.upstream_tool_calls() == before + 2
    issued = [
        r
        for r in await mesh.audit.records()
        if r["action"] == "oauth.token" and r["actor"] == PARTNER and r["outcome"] == "allowed"
    ]
    assert len(issued) == 1  # discovery once, one token for every call
    assert issued[0]["details"]["scopes"] == [SEARCH]  # asked for every advertised scope, got its own


def portal_token(world: World, **claims: Any) -> str:
    return world.mesh.mint(
        world.other.ring, issuer=world.other.url, subject="alice", client_id=PORTAL, **claims
    )


async def test_a_token_of_a_trusted_issuer_is_accepted_for_what_its_policy_entry_allows(world: World) -> None:
    mesh = world.mesh
    trace_id, traceparent = new_trace()
    response = await mesh.call(portal_token(world), "sanctions.search", {"name": "Ana"}, traceparent)
    assert response.status_code == 200, response.text
    record = await mesh.record_for(trace_id)
    assert (record["actor"], record["details"]["subject"], record["details"]["rule"]) == (
        PORTAL,
        "alice",
        "portal-screening",
    )


async def test_a_trusted_issuer_cannot_speak_for_this_gateways_clients_or_bindings(world: World) -> None:
    mesh = world.mesh
    # Its token naming one of our agents gets nothing: policy entries are per issuer.
    impersonation = world.mesh.mint(
        world.other.ring, issuer=world.other.url, client_id="sanctions-agent", scopes=[SEARCH]
    )
    assert_rejected(await mesh.call(impersonation, "sanctions.search", {"name": "Ana"}), 403, "policy_denied")
    # Its `bindings` claim is not ours to trust: a binding constraint cannot be met by a foreign token.
    bound = portal_token(world, scopes=[GET_ACCOUNT], bindings={"account_id": ACCOUNT})
    response = await mesh.call(bound, "ledger.get_account", {"account_id": ACCOUNT})
    assert_rejected(response, 403, "policy_denied")


async def test_a_token_signed_by_an_untrusted_key_in_the_trusted_issuers_name_is_refused(
    world: World,
) -> None:
    forged = world.mesh.mint(KeyRing.generate("RS256"), issuer=world.other.url, client_id=PORTAL)
    response = await world.mesh.call(forged, "sanctions.search", {"name": "Ana"})
    assert_rejected(response, 401, "invalid_token", challenge="invalid_token")


async def test_expired_foreign_tokens_are_refused_like_ours(world: World) -> None:
    expired = portal_token(world, now=time.time() - 3600, lifetime_s=60)
    assert_rejected(
        await world.mesh.call(expired, "sanctions.search", {"name": "Ana"}),
        401,
        "invalid_token",
        "invalid_token",
    )
