"""RFC 9068 access tokens: issuance, verification, and every way a forged or stale token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from accord.errors import ERROR_TABLE, AccordError
from accord.keys import SIGNING_ALGORITHMS, KeyRing, SigningKey, TrustStore
from accord.tokens import AccessClaims, TokenError, TokenVerifier, issue_access_token, sign_jwt

ISSUER = "http://127.0.0.1:8700"
AUDIENCE = "http://127.0.0.1:8700/mcp"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT assembled by hand, the way an attacker would."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signature)}"


def claims_for(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "sanctions-agent",
        "aud": AUDIENCE,
        "client_id": "sanctions-agent",
        "scope": "tool:sanctions.search",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def token_for(ring: KeyRing, **overrides: Any) -> str:
    token: str = issue_access_token(
        ring,
        issuer=overrides.pop("issuer", ISSUER),
        subject=overrides.pop("subject", "orchestrator"),
        client_id=overrides.pop("client_id", "sanctions-agent"),
        audience=overrides.pop("audience", AUDIENCE),
        scopes=overrides.pop("scopes", ["tool:sanctions.search"]),
        lifetime_s=overrides.pop("lifetime_s", 300),
        **overrides,
    )
    return token


def verifier_for(ring: KeyRing, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(ring, issuers={ISSUER}, audience=AUDIENCE, **kwargs)


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as caught:
        verifier.verify(token)
    assert caught.value.reason == "invalid_token"
    cause: str = caught.value.cause
    return cause


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing.generate()


def test_an_issued_token_carries_the_rfc_9068_header_and_claims(ring: KeyRing) -> None:
    token = token_for(ring, act=["sanctions-agent", "orchestrator"], wf="wf-1", task="task-7", grant_id="g-1")
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["kid"] == ring.active.kid
    assert header["alg"] == "ES256"

    claims = verifier_for(ring).verify(token)

    assert claims == AccessClaims(
        iss=ISSUER,
        sub="orchestrator",
        aud=(AUDIENCE,),
        client_id="sanctions-agent",
        scopes=frozenset({"tool:sanctions.search"}),
        iat=claims.iat,
        exp=claims.iat + 300,
        jti=claims.jti,
        act_chain=("sanctions-agent", "orchestrator"),
        wf="wf-1",
        task="task-7",
        grant_id="g-1",
    )
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["act"] == {"sub": "sanctions-agent", "act": {"sub": "orchestrator"}}
    assert claims.has_scope("tool:sanctions.search")


@pytest.mark.parametrize("alg", sorted(SIGNING_ALGORITHMS))
def test_every_allowed_algorithm_round_trips(alg: str) -> None:
    ring = KeyRing.generate(alg)
    assert verifier_for(ring).verify(token_for(ring)).client_id == "sanctions-agent"


def test_each_token_gets_a_fresh_jti(ring: KeyRing) -> None:
    verifier = verifier_for(ring)
    assert verifier.verify(token_for(ring)).jti != verifier.verify(token_for(ring)).jti


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["ES256", "HS256"], []])
def test_a_verifier_cannot_be_configured_with_none_or_hmac(ring: KeyRing, algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match=r"not allowed|empty"):
        TokenVerifier(ring, issuers={ISSUER}, audience=AUDIENCE, algorithms=algorithms)


def test_an_unsigned_alg_none_token_is_refused(ring: KeyRing) -> None:
    token = forge({"alg": "none", "typ": "at+jwt", "kid": ring.active.kid}, claims_for())
    assert refusal(verifier_for(ring), token) == "alg_not_allowed"


def test_hs256_signed_with_the_public_key_pem_is_refused(ring: KeyRing) -> None:
    """The classic confusion attack: the verifier's public key used as an HMAC secret."""
    pem = ring.active.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": ring.active.kid}
    unsigned = forge(header, claims_for()).rsplit(".", 1)[0]
    signature = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    token = f"{unsigned}.{b64(signature)}"
    assert refusal(verifier_for(ring), token) == "alg_not_allowed"


def test_an_algorithm_from_another_key_family_is_refused(ring: KeyRing) -> None:
    rsa_key = SigningKey.generate("RS256")
    token = jwt.encode(
        claims_for(),
        rsa_key.private_key,
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": ring.active.kid},
    )
    assert refusal(verifier_for(ring), token) == "alg_not_allowed"


def test_an_algorithm_outside_the_verifiers_allowlist_is_refused() -> None:
    ring = KeyRing.generate("EdDSA")
    assert refusal(verifier_for(ring, algorithms=["ES256"]), token_for(ring)) == "alg_not_allowed"


def test_an_unknown_kid_is_refused(ring: KeyRing) -> None:
    stranger = KeyRing.generate()
    assert refusal(verifier_for(ring), token_for(stranger)) == "unknown_key"


def test_a_jku_header_pointing_at_the_attackers_keys_is_ignored(ring: KeyRing) -> None:
    attacker = SigningKey.generate()
    token = jwt.encode(
        claims_for(),
        attacker.private_key,
        algorithm="ES256",
        headers={"typ": "at+jwt", "kid": attacker.kid, "jku": "http://127.0.0.1:9/jwks.json"},
    )
    assert refusal(verifier_for(ring), token) == "unknown_key"


def test_a_token_without_kid_is_refused(ring: KeyRing) -> None:
    token = jwt.encode(claims_for(), ring.active.private_key, algorithm="ES256", headers={"typ": "at+jwt"})
    assert refusal(verifier_for(ring), token) == "unknown_key"


def test_a_token_for_another_audience_is_refused(ring: KeyRing) -> None:
    assert refusal(verifier_for(ring), token_for(ring, audience="http://127.0.0.1:8702")) == "wrong_audience"


def test_a_token_from_an_untrusted_issuer_is_refused(ring: KeyRing) -> None:
    assert refusal(verifier_for(ring), token_for(ring, issuer="http://127.0.0.1:9999")) == "wrong_issuer"


def test_an_expired_token_is_refused(ring: KeyRing) -> None:
    token = token_for(ring, lifetime_s=60, now=time.time() - 3600)
    assert refusal(verifier_for(ring), token) == "expired"


def test_the_leeway_tolerates_small_clock_skew_only(ring: KeyRing) -> None:
    just_expired = token_for(ring, lifetime_s=60, now=time.time() - 70)
    assert verifier_for(ring, leeway_s=30).verify(just_expired).client_id == "sanctions-agent"
    assert refusal(verifier_for(ring, leeway_s=5), just_expired) == "expired"


def test_a_token_with_the_wrong_typ_is_refused(ring: KeyRing) -> None:
    token = sign_jwt(ring, claims_for(), typ="JWT")
    assert refusal(verifier_for(ring), token) == "wrong_typ"


def test_the_media_type_spelling_of_the_typ_is_accepted(ring: KeyRing) -> None:
    token = sign_jwt(ring, claims_for(), typ="application/at+jwt")
    assert verifier_for(ring).verify(token).sub == "sanctions-agent"


def test_a_tampered_payload_is_refused(ring: KeyRing) -> None:
    header, _, signature = token_for(ring).split(".")
    forged_claims = b64(json.dumps(claims_for(scope="tool:ledger.get_account")).encode())
    assert refusal(verifier_for(ring), f"{header}.{forged_claims}.{signature}") == "bad_signature"


def test_a_token_without_client_id_or_jti_is_refused(ring: KeyRing) -> None:
    assert (
        refusal(verifier_for(ring), sign_jwt(ring, claims_for(client_id=None), "at+jwt")) == "missing_claim"
    )
    assert refusal(verifier_for(ring), sign_jwt(ring, claims_for(jti=None), "at+jwt")) == "missing_claim"


def test_garbage_is_refused_as_malformed(ring: KeyRing) -> None:
    assert refusal(verifier_for(ring), "not.a.jwt") == "malformed"
    assert refusal(verifier_for(ring), "x" * 20_000) == "malformed"


def test_a_retired_key_verifies_during_its_window_and_not_after() -> None:
    clock = [1_000_000.0]
    ring = KeyRing.generate(clock=lambda: clock[0])
    before_rotation = token_for(ring)
    ring.rotate(overlap_s=120)
    verifier = verifier_for(ring)

    assert verifier.verify(before_rotation).client_id == "sanctions-agent"
    assert verifier.verify(token_for(ring)).client_id == "sanctions-agent"

    clock[0] += 121
    assert refusal(verifier, before_rotation) == "unknown_key"
    assert verifier.verify(token_for(ring)).client_id == "sanctions-agent"


def test_one_issuers_keys_never_vouch_for_another_issuers_tokens() -> None:
    ours, theirs = KeyRing.generate(), KeyRing.generate()
    other_issuer = "http://127.0.0.1:9000"
    verifier = TokenVerifier(
        {ISSUER: ours, other_issuer: TrustStore.from_jwks(theirs.public_jwks())},
        issuers={ISSUER, other_issuer},
        audience=AUDIENCE,
    )
    assert verifier.verify(token_for(theirs, issuer=other_issuer)).iss == other_issuer
    assert refusal(verifier, token_for(theirs, issuer=ISSUER)) == "unknown_key"
    assert refusal(verifier, token_for(ours, issuer="http://127.0.0.1:1")) == "wrong_issuer"


def test_a_plain_kid_to_key_callable_is_a_valid_trust(ring: KeyRing) -> None:
    verifier = TokenVerifier(ring.key_for, issuers={ISSUER}, audience=AUDIENCE)
    assert verifier.verify(token_for(ring)).sub == "orchestrator"


def test_a_token_error_maps_to_the_invalid_token_row_of_the_error_table() -> None:
    error = TokenError("expired")
    assert isinstance(error, AccordError)
    assert error.kind is ERROR_TABLE["invalid_token"]
    assert error.kind.http_status == 401
    with pytest.raises(ValueError, match="unknown token error cause"):
        TokenError("no_such_cause")


def test_issuing_with_a_non_positive_lifetime_is_refused(ring: KeyRing) -> None:
    with pytest.raises(ValueError, match="positive"):
        token_for(ring, lifetime_s=0)
