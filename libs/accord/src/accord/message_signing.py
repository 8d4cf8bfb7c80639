"""Signed A2A messages: a JWS over the canonical message, carried in the message's own metadata.

The signature lives under the `urn:accord:a2a:signed-message:v1` metadata key of the signed object (a
`Message`, `Task` or streaming event; all carry `metadata`). Its payload binds the claims
`iss, sub (caller), aud (callee), wf, task, trace, iat, exp, jti` to `digest`, the SHA-256 of the object's
RFC 8785 canonical JSON with the signature entry removed, so one changed byte anywhere fails verification.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import jwt
import rfc8785
from google.protobuf import json_format
from google.protobuf.message import Message as ProtoMessage

from accord.errors import AccordError
from accord.keys import SIGNING_ALGORITHMS, KeyRing
from accord.payloads import from_struct, to_struct
from accord.replay import ReplayGuard
from accord.tokens import RefreshingKeySource, TokenError, Trust, sign_jwt, verify_jwt

SIGNED_MESSAGE_EXTENSION = "urn:accord:a2a:signed-message:v1"
SIGNATURE_TYP = "accord-msg+jwt"
DEFAULT_LIFETIME_S = 60
DEFAULT_SKEW_S = 5
_REQUIRED = ("iss", "sub", "aud", "iat", "exp", "jti", "digest")
_MAX_JWS_CHARS = 16_384

Signable = TypeVar("Signable", bound=ProtoMessage)


class SignatureError(AccordError):
    """A signed-message check failed; `cause` says which (unsigned, bad_signature, expired, ...)."""

    def __init__(self, cause: str, detail: str | None = None) -> None:
        super().__init__("signature_invalid", detail or cause.replace("_", " "), cause=cause)
        self.cause = cause


@dataclass(frozen=True)
class Envelope:
    """Who sent what to whom, for which run and step, as the signature vouches."""

    iss: str
    sub: str
    aud: str
    wf: str | None
    task: str | None
    trace: str | None
    iat: int
    exp: int
    jti: str


def digest(obj: ProtoMessage) -> str:
    """SHA-256 of the object's canonical JSON, without its signature entry."""
    data = json_format.MessageToDict(obj)
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop(SIGNED_MESSAGE_EXTENSION, None)
        if not metadata:
            del data["metadata"]
    canonical = rfc8785.dumps(data)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def sign(
    obj: Signable,
    ring: KeyRing,
    *,
    issuer: str,
    caller: str,
    callee: str,
    wf: str | None = None,
    task: str | None = None,
    trace: str | None = None,
    lifetime_s: int = DEFAULT_LIFETIME_S,
    now: float | None = None,
) -> Signable:
    """A copy of `obj` carrying a signature that binds it to caller, callee, run and step.

    `now` dates the signature (default: the clock); tests use it to make expired or future-dated messages.
    """
    signed = copy.deepcopy(obj)
    _set_signature(signed, None)
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": caller,
        "aud": callee,
        "iat": issued_at,
        "exp": issued_at + lifetime_s,
        "jti": str(uuid.uuid4()),
        "digest": digest(signed),
    }
    claims.update({k: v for k, v in (("wf", wf), ("task", task), ("trace", trace)) if v})
    _set_signature(signed, sign_jwt(ring, claims, SIGNATURE_TYP))
    return signed


def signature_of(obj: ProtoMessage) -> str | None:
    metadata = getattr(obj, "metadata", None)
    if metadata is None or not obj.HasField("metadata"):  # type: ignore[arg-type]
        return None
    value = from_struct(metadata).get(SIGNED_MESSAGE_EXTENSION)
    return value if isinstance(value, str) else None


def _set_signature(obj: ProtoMessage, jws: str | None) -> None:
    current = from_struct(obj.metadata) if obj.HasField("metadata") else {}  # type: ignore[attr-defined,arg-type]
    current.pop(SIGNED_MESSAGE_EXTENSION, None)
    if jws is not None:
        current[SIGNED_MESSAGE_EXTENSION] = jws
    obj.ClearField("metadata")
    if current:
        obj.metadata.CopyFrom(to_struct(current))  # type: ignore[attr-defined]


class MessageVerifier:
    """Accepts only objects signed by a trusted key, for this audience, in date, and never seen before."""

    def __init__(
        self,
        trust: Trust,
        *,
        issuers: Iterable[str],
        audience: str,
        replay: ReplayGuard,
        skew_s: float = DEFAULT_SKEW_S,
        algorithms: Iterable[str] = SIGNING_ALGORITHMS,
    ) -> None:
        self._trust = trust
        self._issuers = frozenset(issuers)
        self._audience = audience
        self._replay = replay
        self._skew_s = skew_s
        self._algorithms = frozenset(algorithms) & SIGNING_ALGORITHMS

    async def verify(self, obj: ProtoMessage) -> Envelope:
        jws = signature_of(obj)
        if jws is None:
            raise SignatureError("unsigned", "message carries no signature")
        await self._prepare_key(jws)
        claims = self._claims(jws)
        if claims["digest"] != digest(obj):
            raise SignatureError("bad_digest", "message content does not match its signature")
        if claims["iat"] > time.time() + self._skew_s:
            raise SignatureError("not_yet_valid", "message is dated in the future")
        if not await self._replay.first_use(f"msg:{claims['jti']}", float(claims["exp"]) + self._skew_s):
            raise SignatureError("replayed", "message was already delivered")
        return Envelope(
            iss=claims["iss"],
            sub=claims["sub"],
            aud=claims["aud"],
            wf=claims.get("wf"),
            task=claims.get("task"),
            trace=claims.get("trace"),
            iat=int(claims["iat"]),
            exp=int(claims["exp"]),
            jti=claims["jti"],
        )

    async def _prepare_key(self, jws: str) -> None:
        """Let a remote key source (the gateway's JWKS) fetch the signing key first if it lacks it, so a
        rotated key verifies without a restart. Malformed input is left for `_claims` to refuse."""
        if not isinstance(self._trust, RefreshingKeySource) or len(jws) > _MAX_JWS_CHARS:
            return
        try:
            kid = jwt.get_unverified_header(jws).get("kid")
        except jwt.InvalidTokenError:
            return
        if isinstance(kid, str) and kid:
            await self._trust.prepare(kid)

    def _claims(self, jws: str) -> dict[str, Any]:
        try:
            return verify_jwt(
                jws,
                self._trust,
                algorithms=self._algorithms,
                typ=SIGNATURE_TYP,
                issuers=self._issuers,
                audience=self._audience,
                leeway_s=self._skew_s,
                required=_REQUIRED,
            )
        except TokenError as error:
            raise SignatureError(error.cause, error.detail) from error
