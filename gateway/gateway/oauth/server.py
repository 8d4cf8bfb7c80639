"""HTTP face of the authorization server: RFC 8414 metadata, JWKS, the token endpoint, the client admin API.

Token endpoint errors follow RFC 6749 §5.2 (`{"error", "error_description"}`, 400, or 401 for
`invalid_client`); the admin API uses the mesh's error table. Every issuance and refusal is audited, with
identifiers and scopes but never a token or a secret.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from accord.audit import AuditEvent
from accord.errors import AccordError
from accord.keys import SIGNING_ALGORITHMS
from accord.service import read_json_object
from accord.trace_context import trace_id_of
from accord.trust_files import trust_jwks
from gateway.oauth import errors
from gateway.oauth.client_auth import claimed_client_id
from gateway.oauth.clients import new_client
from gateway.oauth.config import (
    ADMIN_CLIENTS_PATH,
    AUTHORIZE_PATH,
    JWKS_PATH,
    METADATA_PATH,
    TOKEN_PATH,
    OAuthConfig,
)
from gateway.oauth.deps import OAuthDeps
from gateway.oauth.secret_hashing import new_client_secret
from gateway.oauth.token_service import CLIENT_CREDENTIALS, GRANT_TYPES, IssuedToken

_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 64 * 1024
_MULTI_VALUED = frozenset({"resource", "audience"})
_ADMIN_FIELDS = frozenset(
    {"client_id", "kind", "scopes", "grant_scopes", "secret", "secret_hash", "jwk", "description"}
)


def authorization_server_metadata(config: OAuthConfig, scopes: set[str]) -> dict[str, Any]:
    """The RFC 8414 document, validated with authlib so a misconfiguration fails loudly."""
    metadata = AuthorizationServerMetadata(
        issuer=config.issuer,
        token_endpoint=config.token_endpoint,
        jwks_uri=config.jwks_uri,
        # RFC 8414 requires response types and the MCP SDK's metadata model insists on an authorization
        # endpoint. This server runs no interactive flow: its endpoint grants nothing, and the only
        # response type named is `none` (OAuth 2.0 Multiple Response Type Encoding Practices).
        authorization_endpoint=config.authorization_endpoint,
        response_types_supported=["none"],
        grant_types_supported=list(GRANT_TYPES),
        token_endpoint_auth_methods_supported=[
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        token_endpoint_auth_signing_alg_values_supported=sorted(SIGNING_ALGORITHMS),
        scopes_supported=sorted(scopes),
    )
    _checked_form(metadata, config.allow_http).validate()
    return dict(metadata)


_URL_MEMBERS = ("issuer", "token_endpoint", "jwks_uri", "authorization_endpoint")


def _checked_form(metadata: AuthorizationServerMetadata, allow_http: bool) -> AuthorizationServerMetadata:
    """What authlib validates: with `allow_http`, the same document as if served over https, so every other
    rule still applies while an http issuer (a compose service name, say) passes."""
    if not allow_http:
        return metadata
    as_https = {
        name: "https://" + value.removeprefix("http://")
        if name in _URL_MEMBERS and isinstance(value, str)
        else value
        for name, value in metadata.items()
    }
    return AuthorizationServerMetadata(as_https)


def _trace_id(request: Request) -> str | None:
    return trace_id_of(request.headers.get("traceparent"))


async def _token_form(request: Request) -> dict[str, str]:
    """The token request's parameters; RFC 6749 §3.2 forbids repeating any of them."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != _FORM:
        raise errors.invalid_request(f"the token endpoint takes {_FORM}")
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise errors.invalid_request("request body is too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.invalid_request("request body is not a valid form") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            if name in _MULTI_VALUED:
                raise errors.invalid_target("one resource per token request")
            raise errors.invalid_request(f"parameter {name} is repeated")
        form[name] = value
    return form


def _check_admin(config: OAuthConfig, request: Request) -> None:
    expected = config.admin_secret
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if expected is None:
        raise AccordError("unauthenticated", "the admin API is disabled (no admin secret configured)")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise AccordError("unauthenticated", "admin credentials required")


def create_oauth_router(deps: OAuthDeps) -> APIRouter:
    """Routes of the authorization server; include them in the gateway app (they use absolute paths)."""
    router = APIRouter()
    config = deps.config
    authenticator = deps.authenticator
    service = deps.token_service
    authorization_server_metadata(config, set())  # fail at startup, not at the first request

    async def audit(
        request: Request, actor: str, action: str, outcome: str, reason: str | None, **details: Any
    ) -> None:
        run_id = details.pop("wf", None)
        event = AuditEvent(
            actor=actor,
            action=action,
            outcome=outcome,
            reason=reason,
            trace_id=_trace_id(request),
            run_id=run_id,
            details={k: v for k, v in details.items() if v is not None},
        )
        await deps.audit.append(event)

    @router.get(METADATA_PATH)
    async def metadata() -> JSONResponse:
        clients = await deps.clients.list_all()
        scopes = {scope for client in clients for scope in client.scopes | client.grant_scopes}
        return JSONResponse(authorization_server_metadata(config, scopes))

    @router.get(JWKS_PATH)
    async def jwks() -> JSONResponse:
        # Short caching: after a rotation verifiers also refetch on an unknown kid. A retired key carries
        # `exp`, the end of its overlap window, so verifiers stop trusting it then without refetching.
        return JSONResponse(trust_jwks(deps.ring), headers={"Cache-Control": "public, max-age=60"})

    @router.get(AUTHORIZE_PATH)
    async def authorize(request: Request) -> JSONResponse:
        if request.query_params.get("response_type") == "none":
            refusal = errors.access_denied("no resource owner can approve requests here")
        else:
            refusal = errors.unsupported_response_type(
                "no interactive authorization; use client_credentials or token exchange"
            )
        return errors.oauth_error_response(refusal)

    async def _issue(request: Request, form: dict[str, str]) -> tuple[str, IssuedToken]:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise errors.invalid_request("grant_type is required")
        authenticated = await authenticator.authenticate(request.headers.get("authorization"), form)
        if grant_type not in GRANT_TYPES:
            raise errors.unsupported_grant_type("supported: " + ", ".join(GRANT_TYPES))
        client = authenticated.client
        if grant_type == CLIENT_CREDENTIALS:
            return client.client_id, service.client_credentials(client, form)
        return client.client_id, await service.token_exchange(client, form)

    @router.post(TOKEN_PATH)
    async def token(request: Request) -> JSONResponse:
        form: dict[str, str] = {}
        try:
            form = await _token_form(request)
            client_id, issued = await _issue(request, form)
        except OAuth2Error as exc:
            actor = claimed_client_id(request.headers.get("authorization"), form)
            await audit(
                request,
                actor,
                "oauth.token",
                "denied",
                errors.oauth_error_code(exc),
                grant_type=form.get("grant_type"),
                detail=exc.description or None,
            )
            return errors.oauth_error_response(exc)
        await audit(request, client_id, "oauth.token", "allowed", None, wf=issued.wf, **issued.audit)
        return JSONResponse(issued.response, headers=errors.NO_STORE_HEADERS)

    @router.post(ADMIN_CLIENTS_PATH, status_code=201)
    async def register_client(request: Request) -> JSONResponse:
        await _admin(request, "oauth.client.register")
        body = await read_json_object(request)
        unknown = set(body) - _ADMIN_FIELDS
        if unknown:
            raise AccordError("invalid_input", f"unknown fields: {sorted(unknown)}")
        generated = None
        if not any(body.get(name) is not None for name in ("secret", "secret_hash", "jwk")):
            generated = body["secret"] = new_client_secret()
        registration = new_client(
            client_id=body.get("client_id", ""),
            kind=body.get("kind", ""),
            scopes=body.get("scopes"),
            grant_scopes=body.get("grant_scopes"),
            secret=body.get("secret"),
            secret_hash=body.get("secret_hash"),
            jwk=body.get("jwk"),
            description=body.get("description", ""),
        )
        client = await deps.clients.register(registration)
        await audit(request, "admin", "oauth.client.register", "allowed", None, client_id=client.client_id)
        view = client.public_view()
        if generated is not None:
            view["client_secret"] = generated  # shown once, never stored in clear
        return JSONResponse(view, status_code=201, headers=errors.NO_STORE_HEADERS)

    @router.get(ADMIN_CLIENTS_PATH)
    async def list_clients(request: Request) -> dict[str, Any]:
        await _admin(request, "oauth.client.list")
        return {"clients": [client.public_view() for client in await deps.clients.list_all()]}

    @router.get(ADMIN_CLIENTS_PATH + "/{client_id}")
    async def get_client(request: Request, client_id: str) -> dict[str, Any]:
        await _admin(request, "oauth.client.get")
        client = await deps.clients.get(client_id)
        if client is None:
            raise AccordError("not_found", "no such client")
        return client.public_view()

    @router.delete(ADMIN_CLIENTS_PATH + "/{client_id}", status_code=204)
    async def delete_client(request: Request, client_id: str) -> Response:
        await _admin(request, "oauth.client.delete")
        if not await deps.clients.delete(client_id):
            raise AccordError("not_found", "no such client")
        await audit(request, "admin", "oauth.client.delete", "allowed", None, client_id=client_id)
        return Response(status_code=204)

    async def _admin(request: Request, action: str) -> None:
        try:
            _check_admin(config, request)
        except AccordError as exc:
            await audit(request, "unknown", action, "denied", exc.reason)
            raise

    return router
