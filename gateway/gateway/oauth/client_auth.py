"""Client authentication at the token endpoint: client_secret_basic, client_secret_post, private_key_jwt.

Exactly one method per request (RFC 6749 §2.3). A `private_key_jwt` assertion (RFC 7523 §3) is verified with
the key registered for the client, must be addressed to this server, be short-lived, and is single-use.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import jwt

from accord.keys import Clock, PublicKey, public_key_from_jwk
from accord.tokens import TokenError, verify_jwt
from gateway.oauth import errors
from gateway.oauth.clients import PRIVATE_KEY_JWT, ClientRegistry, OAuthClient
from gateway.oauth.replay import ReplayGuard
from gateway.oauth.secret_hashing import SecretCheck, decoy_hash

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ASSERTION_CLAIMS = ("iss", "sub", "aud", "exp", "jti")
_MAX_CLAIMED_ID = 128


@dataclass(frozen=True)
class AuthenticatedClient:
    client: OAuthClient
    method: str


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise errors.invalid_client("malformed Basic credentials") from exc
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        raise errors.invalid_client("malformed Basic credentials")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    return unquote(client_id), unquote(secret)


def claimed_client_id(authorization: str | None, form: Mapping[str, str]) -> str:
    """Who the request says it is, before any check: for audit records of refusals (length-capped)."""
    return _claimed(authorization, form)[:_MAX_CLAIMED_ID]


def _claimed(authorization: str | None, form: Mapping[str, str]) -> str:
    try:
        basic = _basic_credentials(authorization)
    except Exception:
        basic = None
    if basic is not None:
        return basic[0]
    if form.get("client_id"):
        return form["client_id"]
    assertion = form.get("client_assertion")
    if assertion:
        try:
            return str(jwt.decode(assertion, options={"verify_signature": False}).get("sub", "unknown"))
        except jwt.InvalidTokenError:
            return "unknown"
    return "unknown"


class ClientAuthenticator:
    def __init__(
        self,
        clients: ClientRegistry,
        replay: ReplayGuard,
        assertion_audiences: frozenset[str],
        max_assertion_lifetime_s: int = 300,
        leeway_s: int = 30,
        clock: Clock = time.time,
    ) -> None:
        self._clients = clients
        self._replay = replay
        self._secrets = SecretCheck()
        self._audiences = assertion_audiences
        self._max_lifetime_s = max_assertion_lifetime_s
        self._leeway_s = leeway_s
        self._clock = clock

    async def authenticate(self, authorization: str | None, form: Mapping[str, str]) -> AuthenticatedClient:
        """The client behind the request, or an `invalid_client` (401) / `invalid_request` error."""
        basic = _basic_credentials(authorization)
        posted = "client_secret" in form
        asserted = "client_assertion" in form or "client_assertion_type" in form
        if sum((basic is not None, posted, asserted)) > 1:
            raise errors.invalid_request("use exactly one client authentication method")
        if basic is not None:
            if form.get("client_id") not in (None, basic[0]):
                raise errors.invalid_request("client_id differs from the Basic credentials")
            return await self._by_secret(basic[0], basic[1], "client_secret_basic")
        if posted:
            return await self._by_secret(
                form.get("client_id", ""), form["client_secret"], "client_secret_post"
            )
        if asserted:
            return await self._by_assertion(form)
        raise errors.invalid_client("client authentication is required")

    async def _by_secret(self, client_id: str, secret: str, method: str) -> AuthenticatedClient:
        client = await self._clients.get(client_id) if client_id else None
        stored = client.secret_hash if client is not None and client.secret_hash else decoy_hash()
        matches = await self._secrets.matches(secret, stored)
        if client is None or client.secret_hash is None or not matches:
            raise errors.invalid_client("client authentication failed")
        return AuthenticatedClient(client, method)

    async def _by_assertion(self, form: Mapping[str, str]) -> AuthenticatedClient:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise errors.invalid_client("unsupported client_assertion_type")
        assertion = form.get("client_assertion", "")
        claimed = claimed_client_id(None, {"client_assertion": assertion})
        if form.get("client_id") not in (None, claimed):
            raise errors.invalid_client("client_id differs from the assertion subject")
        client = await self._clients.get(claimed)
        if client is None or client.public_jwk is None:
            raise errors.invalid_client("client authentication failed")
        claims = self._verified_assertion(assertion, client)
        if claims["iss"] != client.client_id or claims["sub"] != client.client_id:
            raise errors.invalid_client("assertion iss and sub must be the client_id")
        expires_at = float(claims["exp"])
        if expires_at - self._clock() > self._max_lifetime_s + self._leeway_s:
            raise errors.invalid_client("assertion lifetime is too long")
        if not await self._replay.first_use(
            f"{client.client_id}:{claims['jti']}", expires_at + self._leeway_s
        ):
            raise errors.invalid_client("assertion has already been used")
        return AuthenticatedClient(client, PRIVATE_KEY_JWT)

    def _verified_assertion(self, assertion: str, client: OAuthClient) -> dict[str, Any]:
        assert client.public_jwk is not None
        registered_kid = str(client.public_jwk["kid"])
        key = public_key_from_jwk(client.public_jwk)

        # The key is the one registered for this client; a kid in the header may only confirm it.
        def registered_key(kid: str) -> PublicKey | None:
            return key if kid in ("", registered_kid) else None

        try:
            claims: dict[str, Any] = verify_jwt(
                assertion,
                registered_key,
                algorithms=frozenset({str(client.public_jwk["alg"])}),
                typ=None,
                issuers=None,
                audience=self._audiences,
                leeway_s=self._leeway_s,
                required=_ASSERTION_CLAIMS,
                require_kid=False,
            )
        except TokenError as exc:
            raise errors.invalid_client(f"client assertion refused: {exc.cause}") from exc
        return claims
