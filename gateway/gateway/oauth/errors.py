"""RFC 6749 §5.2 error responses for the token endpoint, built on authlib's error classes."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749 import errors as rfc6749
from fastapi.responses import JSONResponse

# RFC 6749 restricts error_description to %x20-21 / %x23-5B / %x5D-7E; anything else is replaced so a
# caller-chosen value can never break the response (authlib raises on such characters).
_UNSAFE_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
_MAX_DESCRIPTION = 200

NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _safe(description: str) -> str:
    return _UNSAFE_DESCRIPTION.sub("?", description)[:_MAX_DESCRIPTION]


def invalid_request(description: str) -> rfc6749.OAuth2Error:
    return rfc6749.InvalidRequestError(description=_safe(description))


def invalid_client(description: str) -> rfc6749.OAuth2Error:
    """Always 401: RFC 6749 requires it when Basic was tried, and our clients expect one status."""
    return rfc6749.InvalidClientError(description=_safe(description), status_code=401)


def invalid_grant(description: str) -> rfc6749.OAuth2Error:
    return rfc6749.InvalidGrantError(description=_safe(description))


def invalid_scope(description: str) -> rfc6749.OAuth2Error:
    return rfc6749.InvalidScopeError(description=_safe(description))


def invalid_target(description: str) -> rfc6749.OAuth2Error:
    """RFC 8707 §2: the requested resource is unknown or not allowed."""
    return rfc6749.OAuth2Error(description=_safe(description), error="invalid_target", status_code=400)


def unsupported_grant_type(description: str) -> rfc6749.OAuth2Error:
    return rfc6749.OAuth2Error(
        description=_safe(description), error="unsupported_grant_type", status_code=400
    )


def unsupported_response_type(description: str) -> rfc6749.OAuth2Error:
    return rfc6749.OAuth2Error(
        description=_safe(description), error="unsupported_response_type", status_code=400
    )


def access_denied(description: str) -> rfc6749.OAuth2Error:
    return rfc6749.AccessDeniedError(description=_safe(description))


def oauth_error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error", "server_error"))


def oauth_error_response(exc: BaseException) -> JSONResponse:
    """The JSON body, status and headers (incl. WWW-Authenticate for 401) of an authlib OAuth2Error."""
    status, body, headers = exc()  # type: ignore[operator]
    response_headers = {name: value for name, value in headers if name.lower() != "content-type"}
    response_headers.update(NO_STORE_HEADERS)
    return JSONResponse(body, status_code=status, headers=response_headers)
