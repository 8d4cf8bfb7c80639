"""RFC 9068 JWT access tokens: issued with a `KeyRing`, verified against trusted keys only.

One implementation serves every service: the gateway issues and checks its own tokens here, and services that
trust another OIDC issuer verify that issuer's tokens here too, with keys from `RemoteJwksTrust` (whose URL
comes from configuration, never from the token).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

import httpx
import jwt

from accord.errors import AccordError
from accord.keys import (
    SIGNING_ALGORITHMS,
    Clock,
    KeyRing,
    KeySource,
    PublicKey,
    TrustStore,
    algorithms_for_key,
    check_algorithms,
)

logger = logging.getLogger(__name__)

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 (a media type, not a secret)
ACCESS_TOKEN_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")
_MAX_TOKEN_BYTES = 16_384
_MAX_ACT_DEPTH = 8

KeyLookup: TypeAlias = KeySource | Callable[[str], PublicKey | None]
Trust: TypeAlias = KeyLookup | Mapping[str, KeyLookup]

TOKEN_ERROR_CAUSES: dict[str, str] = {
    "malformed": "token is not a well-formed JWT",
    "alg_not_allowed": "signing algorithm not allowed",
    "wrong_typ": "token has the wrong type",
    "unknown_key": "token is signed with an unknown key",
    "bad_signature": "token signature does not verify",
    "expired": "token has expired",
    "not_yet_valid": "token is not valid yet",
    "wrong_audience": "token is not meant for this audience",
    "wrong_issuer": "token comes from an untrusted issuer",
    "missing_claim": "token lacks a required claim",
}


class TokenError(AccordError):
    """A token was refused: reason `invalid_token`, with the precise `cause` for logs and audit."""

    def __init__(self, cause: str, detail: str | None = None) -> None:
        if cause not in TOKEN_ERROR_CAUSES:
            raise ValueError(f"unknown token error cause {cause!r}")
        super().__init__("invalid_token", detail or TOKEN_ERROR_CAUSES[cause])
        self.cause = cause


@runtime_checkable
class RefreshingKeySource(Protocol):
    """A key source that may need I/O before it can answer for a key id."""

    def key_for(self, kid: str) -> PublicKey | None: ...

    async def prepare(self, kid: str) -> None: ...


def sign_jwt(ring: KeyRing, claims: Mapping[str, Any], typ: str) -> str:
    """Sign claims with the ring's active key; the header names the key and the token type."""
    key = ring.active
    return jwt.encode(dict(claims), key.private_key, algorithm=key.alg, headers={"typ": typ, "kid": key.kid})


def act_claim(chain: Sequence[str]) -> dict[str, Any] | None:
    """RFC 8693 `act` from a delegation chain, current actor first: [agent, orchestrator] becomes
    {"sub": agent, "act": {"sub": orchestrator}}."""
    claim: dict[str, Any] | None = None
    for actor in reversed(chain):
        claim = {"sub": actor} if claim is None else {"sub": actor, "act": claim}
    return claim


def issue_access_token(
    ring: KeyRing,
    issuer: str,
    subject: str,
    client_id: str,
    audience: str,
    scopes: Iterable[str],
    lifetime_s: int,
    act: Sequence[str] | None = None,
    wf: str | None = None,
    task: str | None = None,
    grant_id: str | None = None,
    now: float | None = None,
    bindings: Mapping[str, Any] | None = None,
    tool_call_limit: int | None = None,
) -> str:
    """An RFC 9068 access token (`typ: at+jwt`); `act` is the delegation chain, current actor first.

    `bindings` are the task's bound values (e.g. the account a ledger step may read), which the resource
    server's argument constraints compare tool arguments against; `tool_call_limit` is the budget of tool
    calls of the run (`wf`) the token works for.
    """
    if lifetime_s <= 0:
        raise ValueError("lifetime_s must be positive")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "client_id": client_id,
        "scope": " ".join(sorted(set(scopes))),
        "iat": issued_at,
        "exp": issued_at + lifetime_s,
        "jti": uuid.uuid4().hex,
    }
    optional = {
        "act": act_claim(act or ()),
        "wf": wf,
        "task": task,
        "grant_id": grant_id,
        "bindings": dict(bindings) if bindings else None,
        "tool_call_limit": tool_call_limit,
    }
    claims.update({name: value for name, value in optional.items() if value is not None})
    return sign_jwt(ring, claims, ACCESS_TOKEN_TYP)


def _normalized_typ(value: object) -> str:
    text = str(value).lower()
    return text.removeprefix("application/")


def _lookup(source: KeyLookup, kid: str) -> PublicKey | None:
    if callable(source):
        return source(kid)
    return source.key_for(kid)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if len(token) > _MAX_TOKEN_BYTES:
        raise TokenError("malformed", "token is too large")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise TokenError("malformed") from exc
    return header, claims


def _source_for(trust: Trust, issuer: object) -> KeyLookup:
    if isinstance(trust, Mapping):
        source = trust.get(str(issuer)) if isinstance(issuer, str) else None
        if source is None:
            raise TokenError("wrong_issuer")
        return source
    return trust


_PYJWT_CAUSES: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "alg_not_allowed"),
    (jwt.InvalidKeyError, "bad_signature"),
)


def verify_jwt(
    token: str,
    trust: Trust,
    *,
    algorithms: frozenset[str],
    typ: str | None,
    issuers: Iterable[str] | None,
    audience: str | Iterable[str] | None,
    leeway_s: float,
    required: Sequence[str],
    require_kid: bool = True,
) -> dict[str, Any]:
    """Check a JWT's header, key, signature and registered claims; return its claims or raise TokenError.

    The algorithm must be on the allowlist *and* fit the resolved key's type, the key comes only from
    `trust` by `kid` (any `jku`, `x5u` or `jwk` header is ignored), and `typ` is compared as RFC 8725 says.
    With `require_kid=False` (a trust that holds a single key) a missing `kid` is looked up as "".
    """
    header, unverified = _unverified(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in SIGNING_ALGORITHMS:
        raise TokenError("alg_not_allowed", f"algorithm {alg!r} is not allowed")
    if typ is not None and _normalized_typ(header.get("typ", "")) != typ:
        raise TokenError("wrong_typ", f"expected typ {typ}")
    kid = header.get("kid", None if require_kid else "")
    if not isinstance(kid, str) or (require_kid and not kid):
        raise TokenError("unknown_key", "token header names no key id")
    key = _lookup(_source_for(trust, unverified.get("iss")), kid)
    if key is None:
        raise TokenError("unknown_key")
    if alg not in algorithms_for_key(key):
        raise TokenError("alg_not_allowed", f"algorithm {alg} does not fit the key")
    issuer_check = None if issuers is None else set(issuers)
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer_check,
            leeway=leeway_s,
            options={"require": list(required), "verify_aud": audience is not None},
        )
    except jwt.InvalidTokenError as exc:
        for error_type, cause in _PYJWT_CAUSES:
            if isinstance(exc, error_type):
                raise TokenError(cause) from exc
        raise TokenError("malformed") from exc


def act_chain_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The delegation chain from a nested RFC 8693 `act` claim, current actor first."""
    chain: list[str] = []
    act = claims.get("act")
    while act is not None:
        if (
            not isinstance(act, Mapping)
            or not isinstance(act.get("sub"), str)
            or len(chain) >= _MAX_ACT_DEPTH
        ):
            raise TokenError("malformed", "act claim is malformed")
        chain.append(act["sub"])
        act = act.get("act")
    return tuple(chain)


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise TokenError("malformed", f"claim {name} must be a string")
    return value


def _optional_count(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise TokenError("malformed", f"claim {name} must be a whole number >= 0")
    return value


def _bindings_of(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    bindings = claims.get("bindings")
    if bindings is None:
        return {}
    if not isinstance(bindings, Mapping) or not all(isinstance(k, str) for k in bindings):
        raise TokenError("malformed", "bindings claim must be an object")
    return dict(bindings)


def _scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    # Some OIDC issuers send scopes as an `scp` array instead.
    scp = claims.get("scp")
    if scope is None and isinstance(scp, list) and all(isinstance(s, str) for s in scp):
        return frozenset(scp)
    if scope is None and scp is None:
        return frozenset()
    raise TokenError("malformed", "scope claim is malformed")


@dataclass(frozen=True)
class AccessClaims:
    """The verified content of an access token."""

    iss: str
    sub: str
    aud: tuple[str, ...]
    client_id: str
    scopes: frozenset[str]
    iat: int
    exp: int
    jti: str
    act_chain: tuple[str, ...] = ()
    wf: str | None = None
    task: str | None = None
    grant_id: str | None = None
    bindings: Mapping[str, Any] = field(default_factory=dict)
    tool_call_limit: int | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AccessClaims:
        aud = claims["aud"]
        # RFC 9068 requires client_id; `azp` is the OIDC spelling some issuers use instead.
        client_id = claims.get("client_id", claims.get("azp"))
        if not isinstance(client_id, str):
            raise TokenError("missing_claim", "token lacks client_id")
        return cls(
            iss=str(claims["iss"]),
            sub=str(claims["sub"]),
            aud=(aud,) if isinstance(aud, str) else tuple(str(a) for a in aud),
            client_id=client_id,
            scopes=_scopes_of(claims),
            iat=int(claims["iat"]),
            exp=int(claims["exp"]),
            jti=str(claims["jti"]),
            act_chain=act_chain_of(claims),
            wf=_optional_str(claims, "wf"),
            task=_optional_str(claims, "task"),
            grant_id=_optional_str(claims, "grant_id"),
            bindings=_bindings_of(claims),
            tool_call_limit=_optional_count(claims, "tool_call_limit"),
        )


class TokenVerifier:
    """Verifies access tokens for one audience (or any of several) from a set of trusted issuers.

    `trust` is a key source (a `TrustStore`, a `KeyRing`, a `RemoteJwksTrust`, or a kid -> key callable) for
    all issuers, or a mapping issuer -> key source so one issuer's keys never vouch for another's tokens.
    """

    def __init__(
        self,
        trust: Trust,
        issuers: Iterable[str],
        audience: str | Iterable[str],
        algorithms: Iterable[str] = SIGNING_ALGORITHMS,
        leeway_s: float = 30,
    ) -> None:
        self._trust = trust
        self._issuers = frozenset(issuers)
        if not self._issuers:
            raise ValueError("a verifier needs at least one trusted issuer")
        self._audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        if not self._audiences:
            raise ValueError("a verifier needs an audience")
        self._algorithms = check_algorithms(algorithms)
        self._leeway_s = leeway_s

    @property
    def audiences(self) -> tuple[str, ...]:
        return self._audiences

    def verify(self, token: str) -> AccessClaims:
        """Verify with the keys at hand (remote key sources answer from their cache)."""
        claims = verify_jwt(
            token,
            self._trust,
            algorithms=self._algorithms,
            typ=ACCESS_TOKEN_TYP,
            issuers=self._issuers,
            audience=list(self._audiences),
            leeway_s=self._leeway_s,
            required=ACCESS_TOKEN_CLAIMS,
        )
        return AccessClaims.from_claims(claims)

    async def verify_async(self, token: str) -> AccessClaims:
        """Like `verify`, but first lets a remote key source fetch the token's key if it lacks it."""
        header, unverified = _unverified(token)
        kid = header.get("kid")
        if isinstance(kid, str) and kid:
            try:
                source = _source_for(self._trust, unverified.get("iss"))
            except TokenError:
                source = None
            if isinstance(source, RefreshingKeySource):
                await source.prepare(kid)
        return self.verify(token)


class RemoteJwksTrust:
    """Trust another issuer's keys, read from the JWKS URL given in configuration, with caching.

    The document is refetched when older than `max_age_s`, or when a token names an unknown kid (at most
    once per `min_refresh_interval_s`, so unknown kids cannot make us hammer the issuer). If a refresh fails
    the last document keeps serving until it is `max_stale_s` old; after that no key is trusted.
    """

    def __init__(
        self,
        jwks_url: str,
        http: httpx.AsyncClient | None = None,
        max_age_s: float = 300,
        min_refresh_interval_s: float = 10,
        max_stale_s: float = 3600,
        timeout_s: float = 5,
        clock: Clock = time.monotonic,
    ) -> None:
        self._url = jwks_url
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._max_age_s = max_age_s
        self._min_refresh_interval_s = min_refresh_interval_s
        self._max_stale_s = max_stale_s
        self._clock = clock
        self._store = TrustStore()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    @property
    def jwks_url(self) -> str:
        return self._url

    async def refresh(self) -> None:
        """Fetch the JWKS now; raises on failure (the previous keys stay cached)."""
        self._attempted_at = self._clock()
        response = await self._http.get(self._url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        store = TrustStore()
        store.add_jwks(document, strict=False)
        self._store = store
        self._fetched_at = self._clock()

    async def prepare(self, kid: str) -> None:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._max_age_s
        unknown = self._store.key_for(kid) is None
        recently_tried = (
            self._attempted_at is not None and now - self._attempted_at < self._min_refresh_interval_s
        )
        if (stale or unknown) and not recently_tried:
            try:
                await self.refresh()
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("JWKS refresh from %s failed: %s", self._url, type(exc).__name__)

    def key_for(self, kid: str) -> PublicKey | None:
        if self._fetched_at is None or self._clock() - self._fetched_at > self._max_stale_s:
            return None
        return self._store.key_for(kid)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()
