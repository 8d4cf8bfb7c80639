"""Signed A2A messages: tampering, wrong signer, wrong audience, expiry, future dating and replay all fail."""

from __future__ import annotations

import time

import jwt
import pytest

from accord.keys import KeyRing, TrustStore
from accord.message_signing import (
    SIGNED_MESSAGE_EXTENSION,
    MessageVerifier,
    SignatureError,
    digest,
    sign,
    signature_of,
)
from accord.payloads import skill_request, to_struct
from accord.replay import MemoryReplayGuard

ISSUER = "http://gateway.test"
TYP = "accord-msg+jwt"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate()


def verifier(ring: KeyRing, audience: str = "ledger-agent", skew_s: float = 5) -> MessageVerifier:
    trust = TrustStore.from_jwks(ring.public_jwks())
    return MessageVerifier(
        trust, issuers=[ISSUER], audience=audience, replay=MemoryReplayGuard(), skew_s=skew_s
    )


def signed_message(ring: KeyRing, **overrides: object):  # type: ignore[no-untyped-def]
    claims = {
        "issuer": ISSUER,
        "caller": "orchestrator",
        "callee": "ledger-agent",
        "wf": "run-1",
        "task": "ledger",
    }
    claims.update(overrides)
    return sign(skill_request("transaction-profile", {"account_id": "ACC-0001"}), ring, **claims)  # type: ignore[arg-type]


async def cause_of(check: MessageVerifier, message: object) -> str:
    with pytest.raises(SignatureError) as caught:
        await check.verify(message)  # type: ignore[arg-type]
    assert caught.value.reason == "signature_invalid"
    return caught.value.cause


async def test_a_signed_message_verifies_and_names_caller_callee_run_and_step(ring: KeyRing) -> None:
    envelope = await verifier(ring).verify(signed_message(ring, trace="0af7651916cd43dd8448eb211c80319c"))
    assert (envelope.sub, envelope.aud, envelope.wf, envelope.task) == (
        "orchestrator",
        "ledger-agent",
        "run-1",
        "ledger",
    )
    assert envelope.trace == "0af7651916cd43dd8448eb211c80319c"


async def test_signing_keeps_the_original_untouched_and_its_other_metadata(ring: KeyRing) -> None:
    original = skill_request("transaction-profile", {"account_id": "ACC-0001"})
    signed = sign(original, ring, issuer=ISSUER, caller="o", callee="ledger-agent")
    assert signature_of(original) is None
    assert signature_of(signed) is not None
    assert "accord.skill" in signed.metadata.fields


async def test_an_unsigned_message_is_refused(ring: KeyRing) -> None:
    assert await cause_of(verifier(ring), skill_request("s", {"a": 1})) == "unsigned"


async def test_one_changed_byte_in_the_content_is_refused(ring: KeyRing) -> None:
    message = signed_message(ring)
    message.parts[0].data.struct_value.fields["account_id"].string_value = "ACC-0002"
    assert await cause_of(verifier(ring), message) == "bad_digest"


async def test_one_changed_byte_in_the_signature_is_refused(ring: KeyRing) -> None:
    message = signed_message(ring)
    jws = signature_of(message)
    assert jws is not None
    flipped = jws[:-5] + ("A" if jws[-5] != "A" else "B") + jws[-4:]
    message.metadata.fields[SIGNED_MESSAGE_EXTENSION].string_value = flipped
    assert await cause_of(verifier(ring), message) == "bad_signature"


async def test_a_message_signed_by_a_key_that_is_not_the_gateways_is_refused(ring: KeyRing) -> None:
    assert await cause_of(verifier(ring), signed_message(KeyRing.generate())) == "unknown_key"


async def test_a_message_addressed_to_another_agent_is_refused(ring: KeyRing) -> None:
    assert await cause_of(verifier(ring, audience="bureau-agent"), signed_message(ring)) == "wrong_audience"


async def test_an_expired_message_is_refused(ring: KeyRing) -> None:
    message = signed_message(ring, lifetime_s=-30)
    assert await cause_of(verifier(ring, skew_s=5), message) == "expired"


async def test_a_message_dated_in_the_future_beyond_the_skew_is_refused(ring: KeyRing) -> None:
    key = ring.active
    message = skill_request("s", {"a": 1})
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "o",
        "aud": "ledger-agent",
        "iat": now + 120,
        "exp": now + 180,
        "jti": "j-future",
        "digest": digest(message),
    }
    token = jwt.encode(
        claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "accord-msg+jwt"}
    )
    message.metadata.CopyFrom(to_struct({SIGNED_MESSAGE_EXTENSION: token}))
    assert await cause_of(verifier(ring), message) == "not_yet_valid"


async def test_the_same_message_replayed_is_refused(ring: KeyRing) -> None:
    check = verifier(ring)
    message = signed_message(ring)
    await check.verify(message)
    assert await cause_of(check, message) == "replayed"


async def test_an_hs256_signature_keyed_with_public_key_material_is_refused(ring: KeyRing) -> None:
    message = skill_request("s", {"a": 1})
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "o",
        "aud": "ledger-agent",
        "iat": now,
        "exp": now + 60,
        "jti": "j-hs",
        "digest": digest(message),
    }
    public_pem = ring.public_jwks()["keys"][0]["x"].encode()
    token = jwt.encode(
        claims, public_pem, algorithm="HS256", headers={"kid": ring.active.kid, "typ": "accord-msg+jwt"}
    )
    message.metadata.CopyFrom(to_struct({SIGNED_MESSAGE_EXTENSION: token}))
    assert await cause_of(verifier(ring), message) == "alg_not_allowed"
