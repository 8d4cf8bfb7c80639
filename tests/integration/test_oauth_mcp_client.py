"""Interoperability: the MCP SDK's OAuth client-credentials providers get tokens from the gateway's
authorization server, and a resource server trusts issuers only through JWKS URLs from its configuration.

The protected resource is a tiny real `MCPServer` with `AuthSettings` (it serves the RFC 9728 metadata that
points the SDK at our issuer) whose token verifier is `accord.tokens.TokenVerifier` over a
`RemoteJwksTrust` reading our published JWKS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi import FastAPI
from mcp import Client
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.provider import TokenVerifier as McpTokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.shared._httpx_utils import create_mcp_http_client

from accord.keys import KeyRing, SigningKey
from accord.tokens import RemoteJwksTrust, TokenError, TokenVerifier, issue_access_token
from tests.oauth_server import (
    WAIT,
    AuthServer,
    MemoryTokenStorage,
    authorization_server,
    bound_socket,
    serving,
    url_of,
)

ECHO = "tool:demo.echo"
CALLER_SECRET = "mcp-caller-secret-0123456789"


class AccordMcpVerifier(McpTokenVerifier):
    """Adapts `accord.tokens.TokenVerifier` to the MCP SDK's resource-server hook."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = await self._verifier.verify_async(token)
        except TokenError:
            return None
        return AccessToken(
            token=token,
            client_id=claims.client_id,
            scopes=sorted(claims.scopes),
            expires_at=claims.exp,
            resource=claims.aud[0],
            subject=claims.sub,
            claims={"iss": claims.iss},
        )


def protected_mcp_server(issuer: str, resource: str, verifier: TokenVerifier) -> Any:
    mcp = MCPServer(
        "demo",
        token_verifier=AccordMcpVerifier(verifier),
        # Validated from plain strings: an AnyHttpUrl built outside AuthSettings gains a trailing slash,
        # and RFC 8414 issuer comparison is exact, so the SDK client would refuse our metadata.
        auth=AuthSettings.model_validate(
            {
                "issuer_url": issuer,
                "resource_server_url": resource,
                "required_scopes": [ECHO],
                "validate_token_resource": True,
            }
        ),
    )

    @mcp.tool()
    def whoami() -> dict[str, Any]:
        token = get_access_token()
        assert token is not None
        return {"client_id": token.client_id, "scopes": token.scopes, "subject": token.subject}

    return mcp.streamable_http_app(stateless_http=True)


@dataclass
class Setup:
    auth: AuthServer
    mcp_url: str
    agent_key: SigningKey


@pytest.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    mcp_sock, auth_sock = bound_socket(), bound_socket()
    mcp_url = url_of(mcp_sock) + "/mcp"
    key = SigningKey.generate("ES256")
    clients: list[dict[str, Any]] = [
        {"client_id": "mcp-caller", "kind": "external", "secret": CALLER_SECRET, "scopes": [ECHO]},
        {"client_id": "keyed-caller", "kind": "external", "jwk": key.public_jwk(), "scopes": [ECHO]},
    ]
    state_dir: Path = tmp_path_factory.mktemp("oauth-mcp")
    async with authorization_server(state_dir, clients, mcp_resource=mcp_url, sock=auth_sock) as auth:
        trust = RemoteJwksTrust(auth.url + "/.well-known/jwks.json")
        verifier = TokenVerifier(trust, issuers={auth.url}, audience=mcp_url)
        try:
            async with serving(protected_mcp_server(auth.url, mcp_url, verifier), mcp_sock):
                yield Setup(auth=auth, mcp_url=mcp_url, agent_key=key)
        finally:
            await trust.aclose()


async def token_issuances(auth: AuthServer, client_id: str) -> int:
    records = await auth.audit_records()
    return sum(
        1
        for r in records
        if r["action"] == "oauth.token" and r["outcome"] == "allowed" and r["actor"] == client_id
    )


async def call_whoami(mcp_url: str, provider: Any, calls: int = 1) -> list[dict[str, Any]]:
    http = create_mcp_http_client(auth=provider)
    results = []
    async with http, Client(streamable_http_client(mcp_url, http_client=http)) as client:
        for _ in range(calls):
            result = await client.call_tool("whoami", {})
            assert not result.is_error, result
            results.append(result.structured_content)
    return results


async def test_the_mcp_sdk_client_credentials_provider_gets_a_token_from_our_token_endpoint(
    setup: Setup,
) -> None:
    before = await token_issuances(setup.auth, "mcp-caller")
    provider = ClientCredentialsOAuthProvider(
        server_url=setup.mcp_url,
        storage=MemoryTokenStorage(),
        client_id="mcp-caller",
        client_secret=CALLER_SECRET,
        scope=ECHO,
        issuer=setup.auth.url,
    )
    results = await call_whoami(setup.mcp_url, provider, calls=3)

    assert results == [{"client_id": "mcp-caller", "scopes": [ECHO], "subject": "mcp-caller"}] * 3
    # One token served every call: discovery, then one issuance.
    assert await token_issuances(setup.auth, "mcp-caller") == before + 1


async def test_the_mcp_sdk_private_key_jwt_provider_authenticates_with_a_signed_assertion(
    setup: Setup,
) -> None:
    pem = setup.agent_key.private_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    ).decode()
    assertion = SignedJWTParameters(
        issuer="keyed-caller",
        subject="keyed-caller",
        signing_key=pem,
        signing_algorithm="ES256",
        lifetime_seconds=60,
    )
    provider = PrivateKeyJWTOAuthProvider(
        server_url=setup.mcp_url,
        storage=MemoryTokenStorage(),
        client_id="keyed-caller",
        assertion_provider=assertion.create_assertion_provider(),
        scope=ECHO,
        issuer=setup.auth.url,
    )
    results = await call_whoami(setup.mcp_url, provider)
    assert results[0]["client_id"] == "keyed-caller"


async def test_the_protected_resource_refuses_tokens_it_cannot_trust(setup: Setup) -> None:
    stranger = KeyRing.generate()
    forged = issue_access_token(
        stranger, setup.auth.url, "mcp-caller", "mcp-caller", setup.mcp_url, [ECHO], lifetime_s=60
    )
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(
            setup.mcp_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            headers={"Authorization": f"Bearer {forged}", "Accept": "application/json, text/event-stream"},
        )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


# --- trusting another issuer by its configured JWKS URL


@dataclass
class OtherIssuer:
    url: str
    ring: KeyRing
    fetches: list[str]

    @property
    def jwks_url(self) -> str:
        return self.url + "/jwks"


@pytest.fixture
async def other_issuer() -> AsyncIterator[OtherIssuer]:
    """A stand-in OIDC provider: it only publishes its JWKS and counts the fetches."""
    sock = bound_socket()
    issuer = OtherIssuer(url=url_of(sock), ring=KeyRing.generate("RS256"), fetches=[])
    app = FastAPI()

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        issuer.fetches.append("jwks")
        document: dict[str, Any] = issuer.ring.public_jwks()
        return document

    async with serving(app, sock):
        yield issuer


async def test_tokens_of_another_issuer_verify_through_its_configured_jwks_url(
    setup: Setup, other_issuer: OtherIssuer
) -> None:
    trust = RemoteJwksTrust(other_issuer.jwks_url, min_refresh_interval_s=0)
    verifier = setup.auth.deps.access_token_verifier(trusted_issuers={other_issuer.url: trust})
    try:
        theirs = issue_access_token(
            other_issuer.ring, other_issuer.url, "alice", "partner-app", setup.mcp_url, [ECHO], lifetime_s=60
        )
        claims = await verifier.verify_async(theirs)
        assert (claims.iss, claims.sub, claims.client_id) == (other_issuer.url, "alice", "partner-app")

        # The other issuer rotates: an unknown kid makes the trust refetch once, then verify.
        other_issuer.ring.rotate(overlap_s=0)
        rotated = issue_access_token(
            other_issuer.ring, other_issuer.url, "bob", "partner-app", setup.mcp_url, [ECHO], lifetime_s=60
        )
        assert (await verifier.verify_async(rotated)).sub == "bob"
        assert other_issuer.fetches == ["jwks", "jwks"]

        # Its keys never vouch for tokens claiming to come from us.
        impostor = issue_access_token(
            other_issuer.ring, setup.auth.url, "alice", "mcp-caller", setup.mcp_url, [ECHO], lifetime_s=60
        )
        with pytest.raises(TokenError) as caught:
            await verifier.verify_async(impostor)
        assert caught.value.cause == "unknown_key"
    finally:
        await trust.aclose()


async def test_unknown_kids_cannot_make_the_trust_hammer_the_other_issuer(
    setup: Setup, other_issuer: OtherIssuer
) -> None:
    trust = RemoteJwksTrust(other_issuer.jwks_url, min_refresh_interval_s=60)
    verifier = setup.auth.deps.access_token_verifier(trusted_issuers={other_issuer.url: trust})
    stranger = KeyRing.generate()
    try:
        for _ in range(5):
            forged = issue_access_token(
                stranger, other_issuer.url, "mallory", "partner-app", setup.mcp_url, [ECHO], lifetime_s=60
            )
            with pytest.raises(TokenError) as caught:
                await verifier.verify_async(forged)
            assert caught.value.cause == "unknown_key"
        assert other_issuer.fetches == ["jwks"]
    finally:
        await trust.aclose()


async def test_a_trust_whose_jwks_url_is_unreachable_trusts_no_key(setup: Setup) -> None:
    dead = bound_socket()  # bound, never listening: connections are refused
    trust = RemoteJwksTrust(url_of(dead) + "/jwks", timeout_s=2)
    verifier = TokenVerifier(trust, issuers={"http://127.0.0.1:1"}, audience=setup.mcp_url)
    try:
        token = issue_access_token(
            KeyRing.generate(), "http://127.0.0.1:1", "x", "y", setup.mcp_url, [ECHO], lifetime_s=60
        )
        with pytest.raises(TokenError) as caught:
            await verifier.verify_async(token)
        assert caught.value.cause == "unknown_key"
    finally:
        await trust.aclose()
        dead.close()
