"""The two grant types of the token endpoint, as decisions over an authenticated client and its request.

* `client_credentials`: a token for the client itself, with scopes ⊆ its registered `scopes`. A request
  naming more gets the registered part only (RFC 6749 §3.3, the `scope` response says what was issued):
  MCP clients ask for every scope the resource advertises. Nothing in common is `invalid_scope`.
* RFC 8693 token exchange: the subject token is a task grant issued to this client; the access token carries
  the grant's principal as `sub`, the delegation chain in `act` (agent, then orchestrator), `wf`, `task` and
  `grant_id`, the grant's `bindings`, scopes ⊆ the grant (and still ⊆ the policy), audience = the requested
  resource, and never outlives the grant. Asking for more than that is `invalid_scope`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.keys import Clock, KeyRing
from accord.tokens import issue_access_token
from gateway.oauth import errors
from gateway.oauth.clients import OAuthClient
from gateway.oauth.config import OAuthConfig
from gateway.oauth.grants import GRANT_TOKEN_TYPE, GrantAuthority, GrantError, TaskGrant

CLIENT_CREDENTIALS = "client_credentials"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN)
GRANT_TYPES = (CLIENT_CREDENTIALS, TOKEN_EXCHANGE)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a URN, not a secret)
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


@dataclass(frozen=True)
class IssuedToken:
    """The token response body and what the audit record may say about it (never the token)."""

    response: dict[str, Any]
    audit: dict[str, Any] = field(default_factory=dict)
    wf: str | None = None


def requested_scopes(form: Mapping[str, str]) -> frozenset[str] | None:
    """The `scope` parameter as a set, or None when absent or empty."""
    scope = form.get("scope", "").strip()
    if not scope:
        return None
    scopes = frozenset(scope.split())
    if not all(_SCOPE_TOKEN.match(s) for s in scopes):
        raise errors.invalid_scope("scope holds invalid characters")
    return scopes


class TokenService:
    def __init__(
        self, config: OAuthConfig, ring: KeyRing, grants: GrantAuthority, clock: Clock = time.time
    ) -> None:
        self._config = config
        self._ring = ring
        self._grants = grants
        self._clock = clock

    def client_credentials(self, client: OAuthClient, form: Mapping[str, str]) -> IssuedToken:
        resource = form.get("resource") or self._config.mcp_resource
        if resource not in self._config.resources:
            raise errors.invalid_target("unknown resource")
        wanted = requested_scopes(form)
        scopes = client.scopes if wanted is None else wanted & client.scopes
        if wanted is not None and not scopes:
            raise errors.invalid_scope("requested scope exceeds the client's registration")
        lifetime = self._config.client_token_lifetime_s
        token = issue_access_token(
            self._ring,
            issuer=self._config.issuer,
            subject=client.client_id,
            client_id=client.client_id,
            audience=resource,
            scopes=scopes,
            lifetime_s=lifetime,
        )
        return IssuedToken(
            response=self._body(token, lifetime, scopes),
            audit={"grant_type": CLIENT_CREDENTIALS, "aud": resource, "scopes": sorted(scopes)},
        )

    async def token_exchange(self, client: OAuthClient, form: Mapping[str, str]) -> IssuedToken:
        self._check_exchange_parameters(form)
        grant = await self._grant_for(client, form["subject_token"])
        resource = form.get("resource")
        if resource is None:
            raise errors.invalid_request("resource is required")
        if resource != grant.audience or resource not in self._config.resources:
            raise errors.invalid_target("resource does not match the grant")
        if form.get("audience") not in (None, resource):
            raise errors.invalid_target("audience does not match the resource")
        wanted = requested_scopes(form)
        allowed = self._grants.bound.grantable(client, grant.scopes)  # the policy may have narrowed
        scopes = allowed if wanted is None else wanted
        if not scopes or not scopes <= allowed:
            raise errors.invalid_scope("requested scope exceeds the grant")
        lifetime = min(self._config.access_token_lifetime_s, math.floor(grant.expires_at - self._clock()))
        if lifetime <= 0:
            raise errors.invalid_grant("grant has expired")
        token = issue_access_token(
            self._ring,
            issuer=self._config.issuer,
            subject=grant.subject,
            client_id=client.client_id,
            audience=resource,
            scopes=scopes,
            lifetime_s=lifetime,
            act=[client.client_id, grant.delegated_by],
            wf=grant.wf,
            task=grant.task,
            grant_id=grant.grant_id,
            bindings=grant.bindings,
            tool_call_limit=grant.tool_call_limit,
        )
        return IssuedToken(
            response={**self._body(token, lifetime, scopes), "issued_token_type": ACCESS_TOKEN_TYPE},
            audit={
                "grant_type": TOKEN_EXCHANGE,
                "aud": resource,
                "scopes": sorted(scopes),
                "grant_id": grant.grant_id,
                "task": grant.task,
            },
            wf=grant.wf,
        )

    @staticmethod
    def _check_exchange_parameters(form: Mapping[str, str]) -> None:
        if not form.get("subject_token"):
            raise errors.invalid_request("subject_token is required")
        if form.get("subject_token_type") != GRANT_TOKEN_TYPE:
            raise errors.invalid_request(f"subject_token_type must be {GRANT_TOKEN_TYPE}")
        if "actor_token" in form or "actor_token_type" in form:
            # The actor is the authenticated client; a second actor identity would only be ambiguous.
            raise errors.invalid_request("actor_token is not accepted; the client is the actor")
        if form.get("requested_token_type") not in (None, ACCESS_TOKEN_TYPE):
            raise errors.invalid_request("only access tokens can be requested")

    async def _grant_for(self, client: OAuthClient, subject_token: str) -> TaskGrant:
        try:
            grant = await self._grants.verify_grant(subject_token)
        except GrantError as exc:
            raise errors.invalid_grant(f"grant refused: {exc.cause}") from exc
        if grant.agent != client.client_id:
            raise errors.invalid_grant("grant was issued to another client")
        return grant

    @staticmethod
    def _body(token: str, lifetime: int, scopes: frozenset[str]) -> dict[str, Any]:
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(sorted(scopes)),
        }
