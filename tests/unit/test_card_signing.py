"""Card signatures: made with a2a-sdk's signer, checked by a2a-sdk's verifier with keys from the trust store
only, and by a second JWS implementation (authlib), each refusal with its own reason code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any, cast

import pytest
from a2a.types import AgentCard, AgentCardSignature
from a2a.utils.signing import ProtectedHeader, create_agent_card_signer
from cryptography.hazmat.primitives import serialization
from jwt.api_jwk import PyJWK

from accord.card_signing import (
    CardSigner,
    CardVerifier,
    SignedCard,
    content_digest,
    publisher_key_file,
    publisher_trust_file,
)
from accord.cards import SkillSchemas, build_card, card_to_dict
from accord.errors import ERROR_TABLE, AccordError
from accord.keys import SIGNING_ALGORITHMS, KeyRing, PublicKey, TrustStore
from tests.independent_card_check import jcs, protected_header, verify_with_authlib, without_empty

SCHEMA = {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0.5, "maximum": 1e6}}}


def sample_card(name: str = "sample-agent", description: str = "an agent for tests") -> AgentCard:
    source = {
        "name": name,
        "description": description,
        "version": "1.0.0",
        "capabilities": {"streaming": True},
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [{"id": "score", "name": "Score", "description": "scores — ünïcödé", "tags": ["t"]}],
    }
    return build_card(source, "http://127.0.0.1:9", "127.0.0.1:10", {"score": SkillSchemas(SCHEMA, SCHEMA)})


def verifier_for(*rings: KeyRing, **kwargs: Any) -> CardVerifier:
    return CardVerifier(TrustStore.from_jwks(*(ring.public_jwks() for ring in rings)), **kwargs)


def refusal(verifier: CardVerifier, card: AgentCard) -> str:
    with pytest.raises(AccordError) as refused:
        verifier.verify(card)
    return refused.value.reason


def sign_with(card: AgentCard, key: Any, header: dict[str, Any]) -> AgentCard:
    """A signature made outside `CardSigner`, as an attacker or another publisher would make it."""
    return create_agent_card_signer(key, cast(ProtectedHeader, header))(card)


@pytest.mark.parametrize("alg", sorted(SIGNING_ALGORITHMS))
def test_a_signed_card_verifies_with_the_sdk_verifier_and_with_authlib(alg: str) -> None:
    ring = KeyRing.generate(alg)
    card = sample_card()

    signed = CardSigner(ring).sign(card)

    assert verifier_for(ring).verify(signed) == ring.active.kid
    assert verify_with_authlib(card_to_dict(signed), ring.public_jwks()) == ring.active.kid
    assert not card.signatures, "signing returns a signed copy and leaves the card alone"


def test_the_protected_header_names_alg_kid_and_typ_and_never_a_key_url() -> None:
    ring = KeyRing.generate()
    [signature] = CardSigner(ring).sign(sample_card()).signatures

    assert protected_header(signature) == {"alg": "ES256", "kid": ring.active.kid, "typ": "JOSE"}


def test_signing_again_replaces_the_signature_rather_than_adding_one() -> None:
    signer = CardSigner(KeyRing.generate())
    twice = signer.sign(signer.sign(sample_card()))
    assert len(twice.signatures) == 1


def test_an_unsigned_card_is_refused_as_card_unsigned() -> None:
    assert refusal(verifier_for(KeyRing.generate()), sample_card()) == "card_unsigned"


@pytest.mark.parametrize(
    "edit",
    [
        lambda card: setattr(card, "description", "an agent for tests!"),
        lambda card: setattr(card.supported_interfaces[0], "url", "http://127.0.0.1:9/elsewhere"),
        lambda card: card.skills[0].tags.append("admin"),
        lambda card: setattr(card, "version", "1.0.1"),
    ],
    ids=["description", "interface", "tag", "version"],
)
def test_a_card_edited_after_signing_is_refused_as_card_signature_invalid(edit: Any) -> None:
    ring = KeyRing.generate()
    signed = CardSigner(ring).sign(sample_card())
    edit(signed)
    assert refusal(verifier_for(ring), signed) == "card_signature_invalid"


def test_a_card_signed_by_an_unknown_key_that_points_jku_at_its_own_keys_is_refused() -> None:
    trusted, attacker = KeyRing.generate(), KeyRing.generate()
    asked: list[str] = []

    class Recording:
        def key_for(self, kid: str) -> PublicKey | None:
            asked.append(kid)
            return trusted.key_for(kid)

    header = {
        "alg": "ES256",
        "kid": attacker.active.kid,
        "typ": "JOSE",
        "jku": "http://127.0.0.1:9/attacker-jwks.json",
    }
    forged = sign_with(sample_card(), PyJWK(attacker.active.private_jwk(), "ES256"), header)

    assert refusal(CardVerifier(Recording()), forged) == "card_signer_unknown"
    assert asked == [attacker.active.kid], "only the kid is looked up, in the trust store"


def test_a_known_kid_on_a_signature_by_another_key_is_refused_as_card_signature_invalid() -> None:
    trusted, attacker = KeyRing.generate(), KeyRing.generate()
    header = {"alg": "ES256", "kid": trusted.active.kid, "typ": "JOSE"}
    forged = sign_with(sample_card(), PyJWK(attacker.active.private_jwk(), "ES256"), header)
    assert refusal(verifier_for(trusted), forged) == "card_signature_invalid"


def test_hmac_signatures_are_refused_as_card_algorithm_not_allowed() -> None:
    ring = KeyRing.generate("RS256")
    kid = ring.active.kid
    public_pem = ring.active.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic confusion: the public key itself used as the HMAC secret.
    confused = hmac_signed(sample_card(), public_pem, kid)
    secret = hmac_signed(sample_card(), b"s" * 32, kid)

    assert refusal(verifier_for(ring), confused) == "card_algorithm_not_allowed"
    assert refusal(verifier_for(ring), secret) == "card_algorithm_not_allowed"


def test_an_unsigned_alg_none_signature_is_refused_as_card_algorithm_not_allowed() -> None:
    ring = KeyRing.generate()
    card = sample_card()
    header = {"alg": "none", "kid": ring.active.kid, "typ": "JOSE"}
    card.signatures.append(AgentCardSignature(protected=_b64(json.dumps(header).encode()), signature=""))
    assert refusal(verifier_for(ring), card) == "card_algorithm_not_allowed"


def test_an_algorithm_of_another_key_family_is_refused_as_card_algorithm_not_allowed() -> None:
    ring = KeyRing.generate("ES256")
    rsa = KeyRing.generate("RS256")
    # Signed by an RSA key but claiming the trusted EC key's kid: the EC key cannot verify RS256.
    header = {"alg": "RS256", "kid": ring.active.kid, "typ": "JOSE"}
    forged = sign_with(sample_card(), PyJWK(rsa.active.private_jwk(), "RS256"), header)
    assert refusal(verifier_for(ring), forged) == "card_algorithm_not_allowed"


def test_an_algorithm_outside_the_configured_allowlist_is_refused() -> None:
    ring = KeyRing.generate("EdDSA")
    signed = CardSigner(ring).sign(sample_card())
    assert refusal(verifier_for(ring, algorithms=["ES256"]), signed) == "card_algorithm_not_allowed"


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["ES256", "HS512"], []])
def test_a_verifier_cannot_be_configured_with_symmetric_or_no_algorithms(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        CardVerifier(TrustStore(), algorithms)


def test_one_good_signature_among_bad_ones_verifies_and_the_closest_failure_names_a_refusal() -> None:
    trusted, stranger = KeyRing.generate(), KeyRing.generate()
    card = CardSigner(stranger).sign(sample_card())
    good = CardSigner(trusted).sign(card).signatures[0]

    assert refusal(verifier_for(trusted), card) == "card_signer_unknown"
    card.signatures.append(good)
    assert verifier_for(trusted).verify(card) == trusted.active.kid


def test_a_signature_with_an_unreadable_header_is_refused_as_card_signature_invalid() -> None:
    card = sample_card()
    card.signatures.append(AgentCardSignature(protected="%%%not-base64%%%", signature="abc"))
    assert refusal(verifier_for(KeyRing.generate()), card) == "card_signature_invalid"


def test_every_card_refusal_is_in_the_error_table_as_a_422_failed_precondition() -> None:
    for reason in (
        "card_unsigned",
        "card_signature_invalid",
        "card_signer_unknown",
        "card_algorithm_not_allowed",
    ):
        kind = ERROR_TABLE[reason]
        assert (kind.http_status, kind.grpc_status.name) == (422, "FAILED_PRECONDITION")


# -- the served card stays signed -------------------------------------------------------------------------


def test_a_signed_card_is_signed_again_after_a_change_and_kept_while_unchanged() -> None:
    ring = KeyRing.generate()
    card = sample_card()
    served = SignedCard(card, CardSigner(ring))
    first = list(served.current().signatures)

    assert served.current().signatures == first, "an unchanged card keeps its signature"
    card.description = "a new description"
    changed = served.current()

    assert changed is card
    assert changed.signatures != first
    assert verifier_for(ring).verify(changed) == ring.active.kid


def test_a_rotation_written_by_another_process_is_picked_up_and_the_card_re_signed(tmp_path: Path) -> None:
    path = tmp_path / "publisher-keys.json"
    served = SignedCard(sample_card(), CardSigner(KeyRing.load_or_create(path)))
    old = protected_header(served.current().signatures[0])["kid"]

    # As `accord keys rotate` would: another ring object on the same file.
    new = KeyRing.load_or_create(path).rotate(overlap_s=60).kid

    assert protected_header(served.current().signatures[0])["kid"] == new != old
    assert verifier_for(KeyRing.load_or_create(path)).verify(served.card) == new


def test_content_digest_ignores_signatures() -> None:
    card = sample_card()
    assert content_digest(CardSigner(KeyRing.generate()).sign(card)) == content_digest(card)


# -- where the signer comes from ---------------------------------------------------------------------------


def test_the_local_publisher_keeps_an_owner_only_ring_and_publishes_its_public_keys(tmp_path: Path) -> None:
    signer = CardSigner.from_env({"ACCORD_STATE_DIR": str(tmp_path)})

    assert signer is not None
    assert stat.S_IMODE(publisher_key_file(tmp_path).stat().st_mode) == 0o600
    published = json.loads(publisher_trust_file(tmp_path).read_text())
    assert [jwk["kid"] for jwk in published["keys"]] == [signer.ring.active.kid]
    assert all("d" not in jwk for jwk in published["keys"]), "no private member is published"
    again = CardSigner.from_env({"ACCORD_STATE_DIR": str(tmp_path)})
    assert again is not None
    assert again.ring.active.kid == signer.ring.active.kid


def test_an_explicit_key_file_wins_and_publishes_nothing(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "acme.json"
    env = {"ACCORD_CARD_SIGNING_KEY_FILE": str(key_file), "ACCORD_STATE_DIR": str(tmp_path / "state")}

    signer = CardSigner.from_env(env)

    assert signer is not None
    assert signer.ring.path == key_file
    assert signer.trust_file is None
    assert not (tmp_path / "state").exists()


def test_without_configuration_there_is_no_signer() -> None:
    assert CardSigner.from_env({}) is None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hmac_signed(card: AgentCard, secret: bytes, kid: str) -> AgentCard:
    """An HS256 signature made by hand (PyJWT refuses a PEM as an HMAC secret; an attacker would not)."""
    protected = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JOSE"}).encode())
    payload = _b64(jcs(without_empty(card_to_dict(card))).encode())
    mac = hmac.new(secret, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    card.signatures.append(AgentCardSignature(protected=protected, signature=_b64(mac)))
    return card
