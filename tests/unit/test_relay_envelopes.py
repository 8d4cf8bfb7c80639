"""Signatures the relay makes and the keys they are checked with: what the relay signs (and strips) on the
way to an agent and back, how verifiers follow the gateway's keys through a rotation (a new key verifies on
first sight, a retired one stops at the end of its window), and that a cached token does not outlive its
key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from a2a.types import Task, TaskState, TaskStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from accord.agent.testing import serving
from accord.bearer import CachedTokenVerifier, keys_still_trusted
from accord.gateway_keys import GatewayKeys
from accord.keys import KeyRing
from accord.message_signing import MessageVerifier, SignatureError, sign
from accord.payloads import (
    GRANT_METADATA_KEY,
    GRANT_RECORD_METADATA_KEY,
    metadata_of,
    skill_request,
    to_struct,
)
from accord.replay import MemoryReplayGuard
from accord.testing.ports import free_port
from accord.tokens import TokenError, TokenVerifier, issue_access_token
from accord.trust_files import trust_jwks
from gateway.relay.envelopes import EnvelopeSigner, Step

ISSUER = "http://gateway.test"
STEP = Step(caller="orchestrator", agent="ledger-agent", wf="run-1", task="ledger", trace_id="a" * 32)


def verifier(keys: Any, audience: str, issuer: str = ISSUER) -> MessageVerifier:
    return MessageVerifier(keys, issuers=[issuer], audience=audience, replay=MemoryReplayGuard())


async def test_the_relay_signs_for_the_agent_the_grant_it_issued_and_nothing_a_caller_smuggled_in() -> None:
    ring = KeyRing.generate()
    signer = EnvelopeSigner(ring, ISSUER, lifetime_s=60)
    smuggled = skill_request("transaction-profile", {"account_id": "ACC-1"}, grant="caller-made-grant")
    smuggled.metadata.fields[GRANT_RECORD_METADATA_KEY].string_value = "forged"
    outbound = signer.request(smuggled, STEP, grant="relay-issued-grant")
    metadata = metadata_of(outbound)
    assert metadata[GRANT_METADATA_KEY] == "relay-issued-grant"
    assert GRANT_RECORD_METADATA_KEY not in metadata
    envelope = await verifier(ring, "ledger-agent").verify(outbound)
    assert (envelope.iss, envelope.sub, envelope.aud) == (ISSUER, "orchestrator", "ledger-agent")
    assert (envelope.wf, envelope.task, envelope.trace) == ("run-1", "ledger", "a" * 32)
    # A step without tools gets no grant, whatever the caller put there.
    assert GRANT_METADATA_KEY not in metadata_of(signer.request(smuggled, STEP, grant=None))


async def test_a_reply_is_signed_for_the_caller_with_the_steps_grant_record() -> None:
    ring = KeyRing.generate()
    signer = EnvelopeSigner(ring, ISSUER, lifetime_s=60)
    task = Task(id="t1", context_id="c1", status=TaskStatus(state=TaskState.TASK_STATE_COMPLETED))
    task.metadata.CopyFrom(to_struct({GRANT_RECORD_METADATA_KEY: "forged by the agent"}))
    record = {"grant_id": "g1", "scopes": ["tool:ledger.get_account"], "revoked": True}
    reply = signer.reply(task, STEP, record)
    assert metadata_of(reply)[GRANT_RECORD_METADATA_KEY] == record
    envelope = await verifier(ring, "orchestrator").verify(reply)
    assert (envelope.sub, envelope.aud) == ("ledger-agent", "orchestrator")
    with pytest.raises(SignatureError) as caught:
        await verifier(ring, "ledger-agent").verify(signer.reply(task, STEP, record))
    assert caught.value.cause == "wrong_audience"


# --- verifiers following the gateway's JWKS through a rotation -------------------------------------------


class JwksServer:
    """A gateway's JWKS endpoint, in this process, serving the keys of `ring` as the gateway does."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.fetches = 0

    async def jwks(self, _request: Request) -> JSONResponse:
        self.fetches += 1
        return JSONResponse(trust_jwks(self.ring))


@contextlib.asynccontextmanager
async def jwks_server(ring: KeyRing) -> AsyncIterator[tuple[JwksServer, str]]:
    server = JwksServer(ring)
    port = free_port()
    app = Starlette(routes=[Route("/.well-known/jwks.json", server.jwks)])
    async with serving(app, "127.0.0.1", port):
        yield server, f"http://127.0.0.1:{port}"


async def test_a_message_signed_with_a_freshly_rotated_key_verifies_on_its_first_delivery() -> None:
    ring = KeyRing.generate()
    async with jwks_server(ring) as (server, url):
        keys = GatewayKeys(url, min_refresh_interval_s=0.5)
        try:
            check = verifier(keys, "ledger-agent", url)
            await check.verify(
                sign(skill_request("s", {}), ring, issuer=url, caller="o", callee="ledger-agent")
            )
            ring.rotate(overlap_s=60)
            # Within the minimum interval since the last fetch: the verifier waits for it, then fetches.
            fresh = sign(skill_request("s", {}), ring, issuer=url, caller="o", callee="ledger-agent")
            await check.verify(fresh)
            assert server.fetches == 2
        finally:
            await keys.aclose()


async def test_unknown_key_ids_cannot_make_the_verifier_hammer_the_gateway() -> None:
    ring = KeyRing.generate()
    async with jwks_server(ring) as (server, url):
        keys = GatewayKeys(url, min_refresh_interval_s=0.2)
        try:
            check = verifier(keys, "ledger-agent", url)
            forged = [
                sign(
                    skill_request("s", {}), KeyRing.generate(), issuer=url, caller="o", callee="ledger-agent"
                )
                for _ in range(10)
            ]
            results = await asyncio.gather(*(check.verify(m) for m in forged), return_exceptions=True)
            assert all(isinstance(r, SignatureError) and r.cause == "unknown_key" for r in results)
            # Ten messages arriving together share the fetches they wait for.
            assert server.fetches <= 2
        finally:
            await keys.aclose()


async def test_a_retired_key_verifies_until_the_end_of_its_window_and_not_after() -> None:
    ring = KeyRing.generate()
    retiring = KeyRing(ring.active)
    async with jwks_server(ring) as (_server, url):
        keys = GatewayKeys(url)
        try:
            # The window's end is published in whole seconds, so it closes between 1 and 2 s from now.
            ring.rotate(overlap_s=2)
            check = verifier(keys, "ledger-agent", url)
            await check.verify(
                sign(skill_request("s", {}), retiring, issuer=url, caller="o", callee="ledger-agent")
            )
            await asyncio.sleep(2.1)
            late = sign(skill_request("s", {}), retiring, issuer=url, caller="o", callee="ledger-agent")
            with pytest.raises(SignatureError) as caught:
                await check.verify(late)
            assert caught.value.cause == "unknown_key"
        finally:
            await keys.aclose()


async def test_a_cached_token_stops_verifying_when_its_key_is_retired() -> None:
    ring = KeyRing.generate()
    cached = CachedTokenVerifier(
        TokenVerifier(ring, issuers=[ISSUER], audience=ISSUER),
        own_issuer=ISSUER,
        leeway_s=0,
        key_trusted=keys_still_trusted({ISSUER: ring}),
    )
    token = issue_access_token(
        ring,
        issuer=ISSUER,
        subject="o",
        client_id="o",
        audience=ISSUER,
        scopes=["a2a:delegate"],
        lifetime_s=300,
    )
    await cached.verify(token)  # verified, and cached
    ring.rotate(overlap_s=0)  # its key is retired at once
    with pytest.raises(TokenError) as caught:
        await cached.verify(token)
    assert caught.value.cause == "unknown_key"
