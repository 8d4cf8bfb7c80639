"""Which scope each orchestrator call needs, and the relay's own tokens (claims, audience, reuse)."""

from __future__ import annotations

import time

import pytest

from accord.caller_auth import RELAYED_SCOPE, relay_audience, required_scope
from accord.cards import JSONRPC_PATH, REST_PATH
from accord.keys import KeyRing
from accord.tokens import TokenError, TokenVerifier
from gateway.relay.credentials import RELAY_ACTOR, RelayCredentials

GATEWAY = "http://gateway.test"


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "/v1/runs", ("api", "runs:read")),
        ("GET", "/v1/runs/r-1", ("api", "runs:read")),
        ("GET", "/v1/workflows", ("api", "runs:read")),
        ("POST", "/v1/workflows/credit-risk/runs", ("api", "runs:start")),
        ("POST", "/v1/runs/r-1/review", ("api", "runs:review")),
        ("POST", "/v1/runs/r-1/approvals/refer", ("api", "runs:review")),
        ("POST", "/v1/runs/r-1/review/", ("api", "runs:start")),  # not the review route: the stricter default
        ("DELETE", "/v1/runs/r-1", ("api", "runs:start")),
        ("POST", JSONRPC_PATH, ("a2a", "runs:start")),
        ("GET", REST_PATH + "/tasks/t-1", ("a2a", "runs:start")),
        ("POST", REST_PATH + "/message:send", ("a2a", "runs:start")),
    ],
)
def test_every_api_and_a2a_route_needs_a_scope(method: str, path: str, needed: tuple[str, str]) -> None:
    assert required_scope(method, path) == needed


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/readyz", "/metrics", "/.well-known/agent-card.json", "/.well-known/agent.json",
     "/.well-known/oauth-protected-resource"],
)  # fmt: skip
def test_card_health_metrics_and_metadata_stay_public(path: str) -> None:
    assert required_scope("GET", path) is None


def test_the_relay_token_names_the_agent_the_caller_and_the_relay_and_is_reused() -> None:
    ring, now = KeyRing.generate(), [time.time()]
    credentials = RelayCredentials(ring, GATEWAY, lifetime_s=120, clock=lambda: now[0])
    header = credentials.header("orchestrator", "orchestrator-client")
    scheme, _, token = header.partition(" ")
    with pytest.raises(TokenError):  # for that agent only
        TokenVerifier(ring, [GATEWAY], relay_audience("ledger-agent")).verify(token)
    claims = TokenVerifier(ring, [GATEWAY], relay_audience("orchestrator")).verify(token)
    assert scheme == "Bearer"
    assert (claims.sub, claims.client_id, claims.scopes) == (
        "orchestrator-client",
        "orchestrator-client",
        frozenset({RELAYED_SCOPE}),
    )
    assert claims.act_chain == (RELAY_ACTOR,)
    assert claims.exp - claims.iat == 120
    now[0] += 59
    assert credentials.header("orchestrator", "orchestrator-client") == header
    assert credentials.header("ledger-agent", "orchestrator-client") != header
    now[0] += 2  # past half its life: a fresh one
    assert credentials.header("orchestrator", "orchestrator-client") != header
