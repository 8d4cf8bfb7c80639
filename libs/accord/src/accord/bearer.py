"""Bearer tokens at a resource server (the gateway's endpoints, the orchestrator's API): taken from the
Authorization header only, verified with `accord.tokens.TokenVerifier` (asymmetric allowlist, trusted
issuers, audience, expiry with bounded skew, `typ: at+jwt`), and remembered once verified until they expire.
Refusals carry the RFC 6750 §3 challenge (`bearer_challenge`), with RFC 9728's `resource_metadata`.

The cache keeps verification (a signature check and two JSON decodes) off the hot path of an agent that
calls many tools with one token. It never extends a token's life: every hit re-checks `exp` against the
clock and, with `key_trusted`, that the key which signed the token is still trusted (a rotated-out key
stops verifying when its overlap window ends, cached or not); revocation of the grant behind a token is
checked per call elsewhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import jwt
from starlette.datastructures import Headers

from accord.errors import AccordError
from accord.keys import KeySource
from accord.tokens import AccessClaims, TokenError, TokenVerifier

DEFAULT_CACHE_ENTRIES = 10_000
# RFC 6750 §3: error_description uses %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_MAX_DESCRIPTION = 200


class MissingToken(Exception):
    """No usable bearer credential in the request (`unauthenticated`)."""


def bearer_token(headers: Headers) -> str:
    """The token of the one `Authorization: Bearer` header; query and form tokens are never read."""
    values = headers.getlist("authorization")
    if len(values) != 1:
        raise MissingToken("send exactly one Authorization header" if values else "bearer token required")
    token = bearer_of(values[0])
    if token is None:
        raise MissingToken("use the Bearer authorization scheme")
    return token


def bearer_of(value: object) -> str | None:
    """The token of one `Authorization` header value, or None unless it is a well-formed Bearer credential."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token and " " not in token else None


def _quoted(value: str) -> str:
    return '"' + _UNSAFE.sub("?", value)[:_MAX_DESCRIPTION] + '"'


def bearer_challenge(
    error: AccordError, scope: str | None = None, resource_metadata: str | None = None
) -> str | None:
    """The `WWW-Authenticate` value for a refusal (RFC 6750 §3), or None where another token would not help:
    `invalid_token` for every 401, `insufficient_scope` naming the missing scope for that 403."""
    if error.kind.http_status == 401:
        parts = ['Bearer error="invalid_token"', f"error_description={_quoted(error.detail)}"]
    elif error.reason == "insufficient_scope":
        parts = [
            'Bearer error="insufficient_scope"',
            f"scope={_quoted(scope or '')}",
            f"error_description={_quoted(error.detail)}",
        ]
    else:
        return None
    if resource_metadata is not None:
        parts.append(f"resource_metadata={_quoted(resource_metadata)}")
    return ", ".join(parts)


def keys_still_trusted(sources: Mapping[str, KeySource]) -> Callable[[str, str], bool]:
    """A `key_trusted` check over each issuer's key source (this gateway's own ring among them)."""

    def trusted(issuer: str, kid: str) -> bool:
        source = sources.get(issuer)
        return source is not None and source.key_for(kid) is not None

    return trusted


class CachedTokenVerifier:
    """Verifies access tokens and caches the verified claims by token until `exp` (+ the allowed skew).

    Claims that only this gateway can vouch for (`bindings`, `grant_id`, `tool_call_limit`) are dropped from
    tokens of other trusted issuers, so a foreign issuer cannot satisfy an argument constraint bound to a
    task grant, nor spend a run's budget of tool calls.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        own_issuer: str,
        leeway_s: float,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        clock: Callable[[], float] = time.time,
        key_trusted: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._verifier = verifier
        self._own_issuer = own_issuer
        self._leeway_s = leeway_s
        self._max_entries = max_entries
        self._clock = clock
        self._key_trusted = key_trusted
        self._cache: dict[str, AccessClaims] = {}
        self._kids: dict[str, str] = {}

    @property
    def own_issuer(self) -> str:
        return self._own_issuer

    async def verify(self, token: str) -> AccessClaims:
        """The verified claims, or `TokenError` (reason `invalid_token`, with its `cause`)."""
        cached = self._cache.get(token)
        if cached is not None:
            if self._clock() < cached.exp + self._leeway_s and self._still_trusted(token, cached):
                return cached
            # Re-verify, so the caller gets the precise cause (`expired`, `unknown_key`).
            del self._cache[token]
            self._kids.pop(token, None)
        claims = await self._verifier.verify_async(token)
        if claims.iss != self._own_issuer:
            claims = replace(claims, bindings={}, grant_id=None, tool_call_limit=None)
        self._remember(token, claims)
        return claims

    def key_id(self, token: str) -> str | None:
        """The key a token verified here was signed with (None where keys are not tracked)."""
        return self._kids.get(token)

    def _still_trusted(self, token: str, claims: AccessClaims) -> bool:
        kid = self._kids.get(token)
        return self._key_trusted is None or (kid is not None and self._key_trusted(claims.iss, kid))

    def _remember(self, token: str, claims: AccessClaims) -> None:
        if len(self._cache) >= self._max_entries:
            now = self._clock()
            self._cache = {t: c for t, c in self._cache.items() if now < c.exp + self._leeway_s}
            if len(self._cache) >= self._max_entries:
                # Still full of live tokens: forget the older half (dicts keep insertion order).
                for stale in list(self._cache)[: self._max_entries // 2]:
                    del self._cache[stale]
            self._kids = {t: k for t, k in self._kids.items() if t in self._cache}
        self._cache[token] = claims
        if self._key_trusted is not None:
            # The token verified, so its header is well formed and names its key.
            self._kids[token] = str(jwt.get_unverified_header(token).get("kid", ""))


__all__ = [
    "CachedTokenVerifier",
    "MissingToken",
    "TokenError",
    "bearer_challenge",
    "bearer_of",
    "bearer_token",
    "keys_still_trusted",
]
