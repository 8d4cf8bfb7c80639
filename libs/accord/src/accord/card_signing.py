"""Signed Agent Cards: a JWS over the RFC 8785 canonical card, made and checked with a2a-sdk's signing.

A publisher signs its agents' cards with its key ring (`CardSigner`); the signature's protected header is
`{alg, kid, typ: JOSE}` and never names a key URL. A verifier (`CardVerifier`) takes keys only from its
trust store, so `jku` or any other URL inside a card is never followed, and it says precisely why a card
is refused: `card_unsigned`, `card_signature_invalid`, `card_signer_unknown` or
`card_algorithm_not_allowed`.

Local mode (`accord up`, the test meshes): every shipped agent belongs to one publisher whose ring lives
at `<state_dir>/publisher-keys.json` (created on first use, 0600) and whose public keys are written to
`<state_dir>/trust/publishers.jwks.json`, the registry's default trust directory.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from a2a.types import AgentCard, AgentCardSignature
from a2a.utils.signing import (
    ProtectedHeader,
    SignatureVerificationError,
    create_agent_card_signer,
    create_signature_verifier,
)
from google.protobuf import json_format
from jwt.api_jwk import PyJWK
from jwt.utils import base64url_decode

from accord.errors import AccordError
from accord.keys import (
    SIGNING_ALGORITHMS,
    KeyRing,
    KeySource,
    algorithms_for_key,
    check_algorithms,
    public_jwk_of,
)
from accord.trust_files import trust_jwks, write_jwks

SIGNING_KEY_FILE_ENV = "ACCORD_CARD_SIGNING_KEY_FILE"
STATE_DIR_ENV = "ACCORD_STATE_DIR"
PUBLISHER_KEY_FILE = "publisher-keys.json"
TRUST_DIR = "trust"
PUBLISHER_TRUST_FILE = "publishers.jwks.json"
# Informational only: verifiers never fetch it (trust comes from their own trust store).
PUBLISHER_JWKS_PATH = "/.well-known/publisher-jwks.json"

# Why a card is refused, from the most to the least specific: when a card has several signatures and
# none verifies, the one that came closest names the reason.
_CAUSES = ("card_signature_invalid", "card_signer_unknown", "card_algorithm_not_allowed")


def publisher_key_file(state_dir: Path) -> Path:
    return state_dir / PUBLISHER_KEY_FILE


def trust_dir(state_dir: Path) -> Path:
    return state_dir / TRUST_DIR


def publisher_trust_file(state_dir: Path) -> Path:
    return trust_dir(state_dir) / PUBLISHER_TRUST_FILE


def unsigned_content(card: Mapping[str, Any]) -> dict[str, Any]:
    """A card's JSON without its signatures: what two versions of a card are compared on."""
    return {key: value for key, value in card.items() if key != "signatures"}


def content_digest(card: AgentCard) -> str:
    """A stable digest of what the signature covers, to know when a card must be signed again."""
    content = unsigned_content(json_format.MessageToDict(card))
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class CardSigner:
    """Signs cards with the ring's active key; a ring loaded from a file follows rotations of that file.

    With `trust_file`, the publisher also keeps that public JWKS (active and still-valid retired keys) up
    to date whenever it signs with a new key.
    """

    def __init__(self, ring: KeyRing, trust_file: Path | None = None) -> None:
        self.ring = ring
        self.trust_file = trust_file
        self._published: str | None = None

    @classmethod
    def local(cls, state_dir: Path) -> CardSigner:
        """The local publisher of every shipped agent, keyed in `state_dir`."""
        signer = cls(KeyRing.load_or_create(publisher_key_file(state_dir)), publisher_trust_file(state_dir))
        signer.publish_trust()
        return signer

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CardSigner | None:
        """`ACCORD_CARD_SIGNING_KEY_FILE` (a ring file; its JWKS is distributed by the operator), else the
        local publisher of `ACCORD_STATE_DIR`, else None (the card is served unsigned)."""
        env = os.environ if environ is None else environ
        key_file = env.get(SIGNING_KEY_FILE_ENV)
        if key_file:
            return cls(KeyRing.load_or_create(Path(key_file)))
        state_dir = env.get(STATE_DIR_ENV)
        if state_dir:
            return cls.local(Path(state_dir))
        return None

    def public_jwks(self) -> dict[str, Any]:
        return trust_jwks(self.ring)

    def publish_trust(self) -> None:
        if self.trust_file is not None:
            write_jwks(self.trust_file, self.public_jwks())
            self._published = self.ring.active.kid

    def sign(self, card: AgentCard) -> AgentCard:
        """A copy of `card` carrying exactly one signature, by the active key."""
        signed = AgentCard()
        signed.CopyFrom(card)
        del signed.signatures[:]
        key = self.ring.active
        if self.trust_file is not None and self._published != key.kid:
            self.publish_trust()
        # No `jku`: a verifier must not be told where to find the key that verifies the card.
        header = cast(ProtectedHeader, {"alg": key.alg, "kid": key.kid, "typ": "JOSE"})
        return create_agent_card_signer(PyJWK(key.private_jwk(), algorithm=key.alg), header)(signed)


class SignedCard:
    """One served card kept signed: signed again whenever its content or the active key changes.

    It re-signs `card` in place, so every holder of that object (the card routes, the request handler)
    sees the current signature.
    """

    def __init__(self, card: AgentCard, signer: CardSigner) -> None:
        self.card = card
        self.signer = signer
        self._signed_as: tuple[str, str] | None = None

    def current(self) -> AgentCard:
        signed_as = (self.signer.ring.active.kid, content_digest(self.card))
        if signed_as != self._signed_as:
            signed = self.signer.sign(self.card)
            del self.card.signatures[:]
            self.card.signatures.extend(signed.signatures)
            self._signed_as = signed_as
        return self.card


class CardVerifier:
    """Checks card signatures with a2a-sdk's verifier, with keys only from `trust`.

    `algorithms` is an allowlist of asymmetric algorithms (HS*, `none` cannot be configured). `verify`
    returns the kid of the key that verified the card, or raises `AccordError` with the reason.
    """

    def __init__(self, trust: KeySource, algorithms: Iterable[str] = SIGNING_ALGORITHMS) -> None:
        self._trust = trust
        self._algorithms = check_algorithms(algorithms)

    def verify(self, card: AgentCard) -> str:
        if not card.signatures:
            raise AccordError("card_unsigned", "the card carries no signature")
        causes: set[str] = set()
        for signature in card.signatures:
            verified, kid_or_cause = self._verify_one(card, signature)
            if verified:
                return kid_or_cause
            causes.add(kid_or_cause)
        reason = next(cause for cause in _CAUSES if cause in causes)
        raise AccordError(reason, _DETAILS[reason])

    def _verify_one(self, card: AgentCard, signature: AgentCardSignature) -> tuple[bool, str]:
        """(True, signer kid) when this signature verifies, else (False, cause from `_CAUSES`)."""
        header = _protected_header(signature)
        if header is None:
            return False, "card_signature_invalid"
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms:
            return False, "card_algorithm_not_allowed"
        if not isinstance(kid, str) or not kid:
            return False, "card_signer_unknown"
        # `jku`, `x5u`, `jwk` in the header are never looked at: the trust store alone names keys.
        key = self._trust.key_for(kid)
        if key is None:
            return False, "card_signer_unknown"
        if alg not in algorithms_for_key(key):
            return False, "card_algorithm_not_allowed"
        # The key is bound to this one algorithm, so the header cannot pick another for it.
        jwk = PyJWK(public_jwk_of(key), algorithm=alg)
        single = AgentCard()
        single.CopyFrom(card)
        del single.signatures[:]
        single.signatures.append(signature)
        try:
            create_signature_verifier(lambda _kid, _jku: jwk, [alg])(single)
        except SignatureVerificationError:
            return False, "card_signature_invalid"
        return True, kid


_DETAILS = {
    "card_signature_invalid": "the card's signature does not match its content",
    "card_signer_unknown": "the card is signed by a key that is not trusted",
    "card_algorithm_not_allowed": "the card is signed with an algorithm that is not allowed",
}


def _protected_header(signature: AgentCardSignature) -> dict[str, Any] | None:
    try:
        header = json.loads(base64url_decode(signature.protected.encode()).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return header if isinstance(header, dict) else None
