"""The gateway's OAuth and grant APIs, from the caller's side (the orchestrator and every agent).

* `client_credentials_token(scopes)`: a token for the caller itself (the orchestrator's `grants:issue`),
  cached until shortly before it expires, fetched once however many tasks ask at the same time.
* `issue_grant(...)` / `revoke_grant(grant_id)`: the task grant of one workflow step (`/v1/grants`).
* `exchange_grant(grant, scopes, resource)`: RFC 8693 token exchange of a task grant for a just-in-time
  access token to `resource` (the gateway's MCP URL).
* `GatewayBearer`: httpx auth that calls another resource (the orchestrator's API) with this client's
  token for it, for callers that hold an httpx client rather than a `GatewayClient`.

Every refusal becomes an `AccordError` with a precise reason code; the gateway's OAuth error code travels
in the error's context. Tokens, grants and secrets are never logged and never part of a repr.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeGuard
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from accord.errors import ERROR_TABLE, AccordError
from accord.keys import Clock

logger = logging.getLogger(__name__)

TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)
GRANTS_PATH = "/v1/grants"
MCP_PATH = "/mcp"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN)
GRANT_TOKEN_TYPE = "urn:accord:params:oauth:token-type:grant"  # noqa: S105 (a URN)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a URN)
GRANTS_ISSUE_SCOPE = "grants:issue"
TOOL_SCOPE_PREFIX = "tool:"

# RFC 6749 §5.2 / RFC 8707 / RFC 8693 error codes, as the mesh's reason codes.
_OAUTH_REASONS: dict[str, str] = {
    "invalid_client": "unauthenticated",
    "unauthorized_client": "policy_denied",
    "access_denied": "policy_denied",
    "invalid_target": "policy_denied",
    "invalid_grant": "invalid_token",
    "invalid_token": "invalid_token",
    "invalid_scope": "insufficient_scope",
    "insufficient_scope": "insufficient_scope",
    "invalid_request": "invalid_input",
    "unsupported_grant_type": "invalid_input",
    "temporarily_unavailable": "upstream_unavailable",
    "server_error": "upstream_unavailable",
}
_MAX_DETAIL = 200


def tool_scope(tool: str) -> str:
    """The scope that lets a caller use one federated tool: `tool:<upstream>.<tool>`."""
    return TOOL_SCOPE_PREFIX + tool


def mcp_resource(gateway_url: str) -> str:
    """The gateway's MCP endpoint: the resource (audience) of just-in-time tool tokens."""
    return gateway_url.rstrip("/") + MCP_PATH


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and what the authorization server said about it. `token` never appears in a repr."""

    token: str = field(repr=False)
    expires_at: float
    scopes: frozenset[str]
    obtained_at: float = 0.0

    def usable(self, now: float, margin_s: float) -> bool:
        """Worth presenting until `margin_s` before expiry (at most half its life, for very short tokens),
        so a call never sets out with a token that expires on the way."""
        lifetime = max(0.0, self.expires_at - self.obtained_at)
        return now < self.expires_at - min(margin_s, lifetime / 2)


@dataclass(frozen=True)
class IssuedGrant:
    """A task grant as the gateway issued it; `grant` (the JWT) never appears in a repr."""

    grant_id: str
    grant: str = field(repr=False)
    scopes: tuple[str, ...]
    dropped_scopes: tuple[str, ...]
    expires_at: float


class GatewayClient:
    """One client identity (`client_id` + secret, client_secret_basic) talking to one gateway."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str | SecretStr,
        http: httpx.AsyncClient | None = None,
        *,
        timeout_s: float = 10.0,
        refresh_margin_s: float = 10.0,
        clock: Clock = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self._owns_http = http is None
        self._timeout_s = timeout_s
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._tokens: dict[tuple[frozenset[str], str | None], AccessToken] = {}
        self._fetching: dict[tuple[frozenset[str], str | None], asyncio.Lock] = {}
        self.token_requests = 0

    def __repr__(self) -> str:
        return f"GatewayClient({self.base_url!r}, client_id={self.client_id!r})"

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    @property
    def refresh_margin_s(self) -> float:
        return self._refresh_margin_s

    def now(self) -> float:
        return self._clock()

    @property
    def token_endpoint(self) -> str:
        return self.base_url + TOKEN_PATH

    # --- tokens

    async def client_credentials_token(
        self, scopes: Iterable[str], resource: str | None = None
    ) -> AccessToken:
        """A token for this client itself (to `resource`, RFC 8707, or the server's default audience);
        cached per scope set and resource, one request however many callers wait."""
        wanted = frozenset(scopes)
        key = (wanted, resource)
        lock = self._fetching.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.usable(self._clock(), self._refresh_margin_s):
                return cached
            form = {"grant_type": "client_credentials"}
            if wanted:
                form["scope"] = " ".join(sorted(wanted))
            if resource is not None:
                form["resource"] = resource
            token = await self._token_request(form, wanted)
            missing = wanted - token.scopes
            if missing:
                # The server may issue less than asked (RFC 6749 §3.3); a token without what the caller
                # needs would only be refused later, further from the cause.
                raise AccordError(
                    "insufficient_scope",
                    "the gateway issued a token without " + " ".join(sorted(missing)),
                    missing_scopes=sorted(missing),
                )
            self._tokens[key] = token
            return token

    def forget_token(
        self, scopes: Iterable[str], resource: str | None = None, token: AccessToken | None = None
    ) -> None:
        """Drop a cached token the gateway no longer accepts (e.g. after a key rotation); with `token`,
        only if that is still the cached one, so concurrent callers do not discard each other's renewal."""
        key = (frozenset(scopes), resource)
        if token is None or self._tokens.get(key) is token:
            self._tokens.pop(key, None)

    async def exchange_grant(self, grant: str, scopes: Iterable[str], resource: str) -> AccessToken:
        """RFC 8693: a just-in-time access token to `resource` for `scopes` ⊆ the grant (not cached here)."""
        wanted = frozenset(scopes)
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": grant,
            "subject_token_type": GRANT_TOKEN_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE,
            "resource": resource,
        }
        if wanted:
            form["scope"] = " ".join(sorted(wanted))
        return await self._token_request(form, wanted)

    async def _token_request(self, form: dict[str, str], requested: frozenset[str]) -> AccessToken:
        self.token_requests += 1
        started = self._clock()
        response = await self._send(
            "POST", self.token_endpoint, data=form, headers={"Authorization": self._basic_credentials()}
        )
        if response.status_code != 200:
            raise _oauth_refusal(response, form["grant_type"])
        return _access_token(response, requested, started)

    def _basic_credentials(self) -> str:
        return basic_credentials(self.client_id, self._secret)

    # --- task grants

    async def issue_grant(
        self,
        agent: str,
        skill: str,
        wf: str,
        task: str,
        scopes: Iterable[str],
        deadline: float,
        bindings: Mapping[str, Any] | None = None,
    ) -> IssuedGrant:
        """Ask the gateway for a grant: `agent` may use `scopes` (∩ its policy) for task `task` of run `wf`
        until `deadline` (unix seconds), with argument `bindings` the policy can constrain calls to."""
        body = {
            "agent": agent,
            "skill": skill,
            "wf": wf,
            "task": task,
            "scopes": sorted(set(scopes)),
            "deadline": deadline,
            "bindings": dict(bindings or {}),
        }
        response = await self._grants_call("POST", self.base_url + GRANTS_PATH, json=body)
        if response.status_code != 201:
            raise _api_refusal(response, "grant request")
        return _issued_grant(response)

    async def revoke_grant(self, grant_id: str) -> None:
        """End a grant now; every token exchanged from it stops working at once."""
        url = f"{self.base_url}{GRANTS_PATH}/{quote(grant_id, safe='')}"
        response = await self._grants_call("DELETE", url)
        if response.status_code not in (200, 204):
            raise _api_refusal(response, "grant revocation")

    async def _grants_call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A grant API call with this client's `grants:issue` token, retried once with a fresh token if
        the gateway no longer accepts the cached one. The token is addressed to the gateway itself (its
        base URL), not to its MCP endpoint: it is good for this API only."""
        scopes = (GRANTS_ISSUE_SCOPE,)
        token = await self.client_credentials_token(scopes, self.base_url)
        response = await self._send(method, url, headers={"Authorization": f"Bearer {token.token}"}, **kwargs)
        if response.status_code == 401:
            self.forget_token(scopes, self.base_url, token)
            token = await self.client_credentials_token(scopes, self.base_url)
            response = await self._send(
                method, url, headers={"Authorization": f"Bearer {token.token}"}, **kwargs
            )
        return response

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, timeout=self._timeout_s, **kwargs)
        except httpx.TimeoutException:
            raise AccordError(
                "upstream_unavailable", f"the gateway did not answer in {self._timeout_s}s"
            ) from None
        except httpx.HTTPError as exc:
            logger.warning(
                "gateway unreachable", extra={"gateway": self.base_url, "error": type(exc).__name__}
            )
            raise AccordError("upstream_unavailable", "the gateway could not be reached") from None


def basic_credentials(client_id: str, secret: SecretStr) -> str:
    """`client_secret_basic`: RFC 6749 §2.3.1 form-urlencodes each part before they are joined and encoded."""
    pair = f"{quote(client_id, safe='')}:{quote(secret.get_secret_value(), safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


class GatewayBearer(httpx.Auth):
    """httpx auth for one client calling one resource with tokens from the gateway's authorization server.

    Client credentials naming the `resource` (RFC 8707); the token is cached until shortly before it
    expires and fetched again once when the resource answers 401 (a rotated key, a restarted gateway).
    The token request goes through the same httpx client as the call, so nothing else needs closing; no
    response body is read but the token response's, so SSE streams pass through untouched. Requests to
    anything but the resource go out without the token: it is never handed to another server.
    """

    def __init__(
        self,
        gateway_url: str,
        client_id: str,
        client_secret: str | SecretStr,
        resource: str,
        scopes: Iterable[str] = (),
        *,
        also_at: Iterable[str] = (),
        refresh_margin_s: float = 10.0,
        clock: Clock = time.time,
    ) -> None:
        self.client_id = client_id
        self.resource = resource
        # Where the resource is also served (a replica's own address): the token may go there too.
        self._places = tuple(url.rstrip("/") for url in (resource, *also_at))
        self._token_endpoint = gateway_url.rstrip("/") + TOKEN_PATH
        self._secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        self._scopes = frozenset(scopes)
        self._margin_s = refresh_margin_s
        self._clock = clock
        self._token: AccessToken | None = None

    def __repr__(self) -> str:
        return f"GatewayBearer(client_id={self.client_id!r}, resource={self.resource!r})"

    async def token(self, http: httpx.AsyncClient) -> str:
        """The token itself, for transports httpx does not carry (gRPC metadata, A2A interceptors)."""
        if not self._usable():
            request, started = self._token_request()
            self._accept(await http.send(request), started)
        assert self._token is not None
        return self._token.token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._for_resource(request):
            yield request
            return
        fresh = not self._usable()
        if fresh:
            token_request, started = self._token_request()
            response = yield token_request
            response.read()
            self._accept(response, started)
        response = yield self._authorized(request)
        if response.status_code == 401 and not fresh:
            token_request, started = self._token_request()
            renewed = yield token_request
            renewed.read()
            self._accept(renewed, started)
            yield self._authorized(request)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._for_resource(request):
            yield request
            return
        fresh = not self._usable()
        if fresh:
            token_request, started = self._token_request()
            response = yield token_request
            await response.aread()
            self._accept(response, started)
        response = yield self._authorized(request)
        if response.status_code == 401 and not fresh:
            token_request, started = self._token_request()
            renewed = yield token_request
            await renewed.aread()
            self._accept(renewed, started)
            yield self._authorized(request)

    def _for_resource(self, request: httpx.Request) -> bool:
        url = str(request.url)
        return any(url == place or url.startswith((place + "/", place + "?")) for place in self._places)

    def _usable(self) -> bool:
        return self._token is not None and self._token.usable(self._clock(), self._margin_s)

    def _token_request(self) -> tuple[httpx.Request, float]:
        form = {"grant_type": "client_credentials", "resource": self.resource}
        if self._scopes:
            form["scope"] = " ".join(sorted(self._scopes))
        headers = {"Authorization": basic_credentials(self.client_id, self._secret)}
        return httpx.Request("POST", self._token_endpoint, data=form, headers=headers), self._clock()

    def _accept(self, response: httpx.Response, started: float) -> None:
        if response.status_code != 200:
            raise _oauth_refusal(response, "client_credentials")
        self._token = _access_token(response, self._scopes, started)

    def _authorized(self, request: httpx.Request) -> httpx.Request:
        assert self._token is not None
        request.headers["Authorization"] = f"Bearer {self._token.token}"
        return request


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _safe(text: object) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(text))[:_MAX_DETAIL]


def _status_reason(status: int) -> str:
    if status == 401:
        return "unauthenticated"
    if status == 403:
        return "policy_denied"
    if status == 404:
        return "not_found"
    if status == 409:
        return "conflict"
    if status == 429:
        return "rate_limited"
    if status < 500:
        return "invalid_input"
    return "upstream_unavailable"


def _oauth_refusal(response: httpx.Response, grant_type: str) -> AccordError:
    """An RFC 6749 §5.2 error response as an AccordError; the OAuth code stays in the context."""
    body = _json_object(response) or {}
    code = body.get("error")
    reason = _OAUTH_REASONS.get(code) if isinstance(code, str) else None
    reason = reason or _status_reason(response.status_code)
    what = "token exchange" if grant_type == TOKEN_EXCHANGE else "token request"
    description = body.get("error_description")
    detail = f"{what} refused by the gateway ({_safe(code or response.status_code)})"
    if isinstance(description, str) and description:
        detail += f": {_safe(description)}"
    context = {"oauth_error": _safe(code)} if isinstance(code, str) else {"status": response.status_code}
    logger.info("gateway refused a token request", extra={"grant_type": grant_type, "reason": reason})
    return AccordError(reason, detail, **context)


def _api_refusal(response: httpx.Response, what: str) -> AccordError:
    """A mesh error body `{"error": {"reason", "message"}}` keeps its reason; otherwise the status decides."""
    body = _json_object(response) or {}
    error = body.get("error")
    reason = error.get("reason") if isinstance(error, dict) else None
    if not isinstance(reason, str) or reason not in ERROR_TABLE:
        reason = _status_reason(response.status_code)
    message = error.get("message") if isinstance(error, dict) else None
    detail = f"{what} refused by the gateway ({response.status_code})"
    if isinstance(message, str) and message:
        detail += f": {_safe(message)}"
    return AccordError(reason, detail)


def _malformed(what: str) -> AccordError:
    return AccordError("upstream_unavailable", f"the gateway answered with a malformed {what}")


def _access_token(response: httpx.Response, requested: frozenset[str], started: float) -> AccessToken:
    body = _json_object(response)
    if body is None:
        raise _malformed("token response")
    token = body.get("access_token")
    token_type = body.get("token_type")
    expires_in = body.get("expires_in")
    if not isinstance(token, str) or not token or not isinstance(token_type, str):
        raise _malformed("token response")
    if token_type.lower() != "bearer":
        raise _malformed("token response (not a bearer token)")
    if not _finite_number(expires_in) or expires_in <= 0:
        raise _malformed("token response (no positive expires_in)")
    scope = body.get("scope")
    # RFC 6749 §5.1: without `scope` the token has exactly the requested scope.
    scopes = frozenset(scope.split()) if isinstance(scope, str) else requested
    # Counted from before the request was sent, so the cached expiry is never later than the real one.
    return AccessToken(token, started + float(expires_in), scopes, obtained_at=started)


def _finite_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _string_list(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)


def _issued_grant(response: httpx.Response) -> IssuedGrant:
    body = _json_object(response)
    if body is None:
        raise _malformed("grant")
    grant_id, grant = body.get("grant_id"), body.get("grant")
    scopes, dropped = _string_list(body.get("scopes")), _string_list(body.get("dropped_scopes", []))
    expires_at = body.get("expires_at")
    if not isinstance(grant_id, str) or not grant_id or not isinstance(grant, str) or not grant:
        raise _malformed("grant")
    if scopes is None or dropped is None:
        raise _malformed("grant (scopes)")
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, int | float)
        or not math.isfinite(expires_at)
    ):
        raise _malformed("grant (expires_at)")
    return IssuedGrant(grant_id, grant, scopes, dropped, float(expires_at))
