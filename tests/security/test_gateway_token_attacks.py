"""Tokens the gateway must refuse at `/mcp`, on real processes.

Each refusal is a 401 with `WWW-Authenticate: Bearer error="invalid_token", ..., resource_metadata=...`, a
JSON-RPC error with the reason code, one audit record with that reason and the caller's trace id, and no
upstream call at all. The tokens would otherwise be good: they name a real agent and the scope of a tool
its policy allows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from accord.keys import KeyRing
from tests.gateway_mesh import (
    SEARCH,
    GatewayMesh,
    assert_rejected,
    gateway_mesh,
    new_trace,
)

ARGUMENTS = {"name": "Tariq Hassan Al-Rashid"}


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayMesh]:
    async with gateway_mesh(tmp_path_factory.mktemp("gw-token-attacks"), port_offset=22200) as running:
        yield running


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def good_claims(mesh: GatewayMesh) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": mesh.url,
        "sub": "sanctions-agent",
        "aud": mesh.mcp_url,
        "client_id": "sanctions-agent",
        "scope": SEARCH,
        "iat": now,
        "exp": now + 120,
        "jti": "forged-" + str(now),
    }


def alg_none(mesh: GatewayMesh) -> str:
    kid = mesh.key_ring().active.kid
    return unsigned({"alg": "none", "typ": "at+jwt", "kid": kid}, good_claims(mesh))


def hs256_keyed_with_the_public_key(mesh: GatewayMesh) -> str:
    """The classic confusion attack: HMAC with the gateway's (public) verification key as the secret."""
    key = mesh.key_ring().active
    public_pem = key.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(good_claims(mesh)).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


FORGERIES: dict[str, tuple[Callable[[GatewayMesh], str], str]] = {
    "expired": (lambda m: m.mint(now=time.time() - 3600, lifetime_s=60), "expired"),
    "unknown-key": (lambda m: m.mint(KeyRing.generate()), "unknown_key"),
    "unknown-issuer": (lambda m: m.mint(KeyRing.generate(), issuer="http://127.0.0.1:9/"), "wrong_issuer"),
    "alg-none": (alg_none, "alg_not_allowed"),
    "hs256-with-public-key": (hs256_keyed_with_the_public_key, "alg_not_allowed"),
    "wrong-audience": (lambda m: m.mint(audience=m.url), "wrong_audience"),
}


async def assert_refused_without_upstream_call(
    mesh: GatewayMesh, token: str | None, reason: str, cause: str | None
) -> dict[str, Any]:
    trace_id, traceparent = new_trace()
    before = await mesh.upstream_tool_calls()

    response = await mesh.call(token, "sanctions.search", ARGUMENTS, traceparent)

    assert_rejected(response, 401, reason, challenge="invalid_token")
    header = response.headers["www-authenticate"]
    assert f'resource_metadata="{mesh.url}/.well-known/oauth-protected-resource/mcp"' in header
    assert "error_description=" in header
    assert response.headers["cache-control"] == "no-store"
    record = await mesh.record_for(trace_id)
    assert (record["action"], record["outcome"], record["reason"]) == ("tools/call", "denied", reason)
    assert record["details"]["tool"] == "sanctions.search"
    if cause is not None:
        assert record["details"]["detail"].startswith(cause + ":"), record
    if token is not None:
        assert token not in json.dumps(record)
    assert await mesh.upstream_tool_calls() == before
    return record


async def test_a_call_without_a_token_is_401_and_reaches_no_upstream(mesh: GatewayMesh) -> None:
    record = await assert_refused_without_upstream_call(mesh, None, "unauthenticated", None)
    assert record["actor"] == "anonymous"


@pytest.mark.parametrize(
    ("forgery", "cause"),
    [(name, cause) for name, (_, cause) in FORGERIES.items()],
    ids=list(FORGERIES),
)
async def test_a_token_that_does_not_verify_is_401_invalid_token_and_reaches_no_upstream(
    mesh: GatewayMesh, forgery: str, cause: str
) -> None:
    make, _ = FORGERIES[forgery]
    await assert_refused_without_upstream_call(mesh, make(mesh), "invalid_token", cause)


async def test_a_token_of_another_type_is_refused(mesh: GatewayMesh) -> None:
    """A grant JWT is signed by the gateway too, but it is not an access token (`typ` differs)."""
    issued = await mesh.grant("sanctions-agent", [SEARCH])
    await assert_refused_without_upstream_call(mesh, issued["grant"], "invalid_token", "wrong_typ")


async def test_a_token_for_another_resource_from_client_credentials_is_refused(mesh: GatewayMesh) -> None:
    """An orchestrator token minted for the gateway's own API (resource = its base URL), used at /mcp."""
    token = await mesh.client_credentials("orchestrator", resource=mesh.url)
    await assert_refused_without_upstream_call(mesh, token, "invalid_token", "wrong_audience")


@pytest.mark.parametrize(
    "authorization",
    ["Basic c2FuY3Rpb25zOnNlY3JldA==", "Bearer", "Bearer a b", "bearer-token-without-scheme"],
    ids=["basic", "empty-bearer", "two-tokens", "no-scheme"],
)
async def test_other_authorization_schemes_are_unauthenticated(mesh: GatewayMesh, authorization: str) -> None:
    trace_id, traceparent = new_trace()
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "authorization": authorization,
        "traceparent": traceparent,
    }
    body = {"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"name": "sanctions.search"}}
    response = await mesh.http.post(mesh.mcp_url, json=body, headers=headers)
    assert_rejected(response, 401, "unauthenticated", challenge="invalid_token")
    assert (await mesh.record_for(trace_id))["reason"] == "unauthenticated"


async def test_every_mcp_request_needs_a_token_not_only_tool_calls(mesh: GatewayMesh) -> None:
    trace_id, traceparent = new_trace()
    response = await mesh.rpc(None, "tools/list", {}, traceparent)
    assert_rejected(response, 401, "unauthenticated", challenge="invalid_token")
    record = await mesh.record_for(trace_id)
    assert (record["action"], record["details"]["method"]) == ("mcp.request", "tools/list")
