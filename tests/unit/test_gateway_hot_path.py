"""The pieces of the per-call check that need no network: bearer parsing, the verified-token cache, the
token-bucket rate limiter, refusal headers, the group-commit audit log and the layer's verdict authorizer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers
from starlette.requests import Request

from accord.audit import AuditEvent, AuditLog, verify_chain
from accord.bearer import CachedTokenVerifier, MissingToken, bearer_token
from accord.errors import AccordError
from accord.keys import KeyRing
from accord.storage import create_engine
from accord.tokens import TokenError, TokenVerifier, issue_access_token
from gateway.audit_batch import GroupCommitAuditLog
from gateway.authorization import LayerVerdictAuthorizer, ToolCallContext
from gateway.caller import AUTHORIZED_CALL_KEY, AuthorizedCall, Caller
from gateway.challenges import Rejection, jsonrpc_error
from gateway.policy import RateLimit, Subject
from gateway.rate_limit import MemoryRateLimiter

ISSUER = "http://127.0.0.1:8700"
RESOURCE = ISSUER + "/mcp"
OTHER = "https://idp.example"
METADATA = ISSUER + "/.well-known/oauth-protected-resource/mcp"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(raw=[(k.encode(), v.encode()) for k, v in pairs])


@pytest.mark.parametrize(
    "values",
    [[], ["Basic abc"], ["Bearer"], ["Bearer a b"], ["Bearer a", "Bearer b"], ["token-only"]],
    ids=["none", "basic", "empty", "two-parts", "two-headers", "no-scheme"],
)
def test_only_one_bearer_authorization_header_is_a_token(values: list[str]) -> None:
    with pytest.raises(MissingToken):
        bearer_token(headers(*(("authorization", v) for v in values)))


def test_the_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token(headers(("authorization", "bearer  abc.def.ghi "))) == "abc.def.ghi"


def verifier_for(ring: KeyRing, other: KeyRing, clock: Clock) -> CachedTokenVerifier:
    trust = {ISSUER: ring, OTHER: other}
    return CachedTokenVerifier(
        TokenVerifier(trust, trust.keys(), RESOURCE, leeway_s=0), ISSUER, 0, clock=clock
    )


async def test_a_verified_token_is_cached_until_it_expires_and_then_refused() -> None:
    now = time.time()
    ring, clock = KeyRing.generate(), Clock(now)
    token = issue_access_token(ring, ISSUER, "a", "a", RESOURCE, ["tool:x.y"], lifetime_s=60, now=now)
    verifier = verifier_for(ring, KeyRing.generate(), clock)
    first = await verifier.verify(token)
    ring.rotate(overlap_s=0)  # the key is gone: only the cache can still answer
    assert await verifier.verify(token) is first
    clock.now = now + 61
    with pytest.raises(TokenError):
        await verifier.verify(token)


async def test_bindings_and_grants_are_trusted_only_from_the_gateways_own_tokens() -> None:
    ring, other = KeyRing.generate(), KeyRing.generate()
    verifier = verifier_for(ring, other, Clock(time.time()))
    bound = {"account_id": "ACC-1"}
    ours = issue_access_token(ring, ISSUER, "a", "a", RESOURCE, [], 60, grant_id="g1", bindings=bound)
    theirs = issue_access_token(other, OTHER, "a", "a", RESOURCE, [], 60, grant_id="g1", bindings=bound)
    assert ((await verifier.verify(ours)).bindings, (await verifier.verify(ours)).grant_id) == (bound, "g1")
    assert ((await verifier.verify(theirs)).bindings, (await verifier.verify(theirs)).grant_id) == ({}, None)


async def test_a_token_bucket_allows_the_burst_then_says_how_long_to_wait() -> None:
    clock = Clock(100.0)
    limiter = MemoryRateLimiter(clock=clock)
    limit = RateLimit(per_second=2, burst=3)
    assert [await limiter.acquire("a", limit) for _ in range(3)] == [0, 0, 0]
    assert await limiter.acquire("a", limit) == pytest.approx(0.5)
    assert await limiter.acquire("b", limit) == 0  # other clients have their own bucket
    clock.now += 0.5
    assert await limiter.acquire("a", limit) == 0
    clock.now += 60
    assert [await limiter.acquire("a", limit) for _ in range(4)][-1] > 0  # refills only up to the burst


def test_refusals_carry_the_challenges_the_mcp_spec_asks_for() -> None:
    expired = dict(Rejection(TokenError("expired")).headers(METADATA))
    assert expired[b"www-authenticate"] == (
        b'Bearer error="invalid_token", error_description="token has expired", '
        b'resource_metadata="' + METADATA.encode() + b'"'
    )
    scope = dict(Rejection(AccordError("insufficient_scope", 'the "x"'), scope="tool:a.b").headers(METADATA))
    assert scope[b"www-authenticate"].startswith(b'Bearer error="insufficient_scope", scope="tool:a.b", ')
    assert b'"the ?x?"' in scope[b"www-authenticate"]  # quotes in a description cannot break the header
    limited = dict(Rejection(AccordError("rate_limited"), retry_after_s=0.2).headers(METADATA))
    assert (limited[b"retry-after"], b"www-authenticate" in limited) == (b"1", False)
    policy = dict(Rejection(AccordError("policy_denied")).headers(METADATA))
    assert b"www-authenticate" not in policy


def test_a_rejection_body_is_a_json_rpc_error_with_the_reason_code() -> None:
    assert jsonrpc_error(7, AccordError("policy_denied", "no")) == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32043, "message": "no", "data": {"reason": "policy_denied"}},
    }
    assert jsonrpc_error({"odd": "id"}, AccordError("unauthenticated"))["id"] is None
    assert jsonrpc_error(True, AccordError("unauthenticated"))["id"] is None


async def test_concurrent_audit_appends_share_transactions_and_keep_the_chain(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    log = GroupCommitAuditLog(engine, "gateway")
    await log.initialize()
    batches: list[int] = []
    original = log._commit

    async def counting(events: list[AuditEvent]) -> list[dict[str, Any]]:
        batches.append(len(events))
        return await original(events)

    log._commit = counting  # type: ignore[method-assign]
    records = await asyncio.gather(
        *(
            log.append(AuditEvent(actor=f"a{i}", action="t", outcome="ok", details={"n": i}))
            for i in range(50)
        )
    )
    await log.append(AuditEvent(actor="last", action="t", outcome="ok"))
    await log.drain()
    # What the SQLite writer stored reads back through the ordinary AuditLog, chain intact.
    stored = await AuditLog(engine, "gateway").records()
    await engine.dispose()
    assert sorted(r["actor"] for r in records) == sorted(f"a{i}" for i in range(50))
    assert [r["seq"] for r in stored] == list(range(1, 52))
    assert [r["details"] for r in stored[:50]] == [
        r["details"] for r in sorted(records, key=lambda r: r["seq"])
    ]
    assert [r["hash"] for r in stored[:50]] == [r["hash"] for r in sorted(records, key=lambda r: r["seq"])]
    assert verify_chain(stored) is None
    assert len(batches) < 50
    assert sum(batches) == 51


def call_context(
    state: dict[str, Any], tool: str = "a.b", arguments: dict[str, Any] | None = None
) -> ToolCallContext:
    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": [], "state": state}
    return ToolCallContext(tool, "a", "b", arguments or {"x": 1}, Headers(), "0" * 32, Request(scope))


async def test_the_federation_allows_only_the_very_call_the_layer_allowed() -> None:
    ring = KeyRing.generate()
    token = issue_access_token(
        ring, ISSUER, "orchestrator", "ledger-agent", RESOURCE, [], 60, wf="r", task="t"
    )
    verified = TokenVerifier(ring, [ISSUER], RESOURCE).verify(token)
    caller = Caller(verified, Subject("ledger-agent"))
    allowed = {AUTHORIZED_CALL_KEY: AuthorizedCall(caller, "a.b", {"x": 1}, "rule-1")}
    authorizer = LayerVerdictAuthorizer()

    decision = await authorizer.authorize(call_context(allowed))
    assert (decision.allowed, decision.principal, decision.run_id, decision.rule) == (
        True,
        "ledger-agent",
        "r",
        "rule-1",
    )
    assert (await authorizer.authorize(call_context({}))).reason == "unauthenticated"
    assert (await authorizer.authorize(call_context(allowed, tool="a.c"))).reason == "internal_error"
    assert (await authorizer.authorize(call_context(allowed, arguments={"x": 2}))).reason == "internal_error"
